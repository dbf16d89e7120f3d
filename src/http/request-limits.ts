/**
 * What one request may cost the server before any route runs: how large a body that is parsed
 * whole may be, and how slowly any body may arrive. Node's own timeouts (headers, idle
 * connections) are set where the server is created (main.ts).
 */
import type { IncomingMessage } from 'node:http';
import express, { type Request, type RequestHandler, type Response } from 'express';
import type { Config } from '../config.js';
import { tooLarge } from '../domain/errors.js';
import { hashParsedBody } from './body-digest.js';

/** Every JSON or form body is parsed whole, so it is capped: 1 MiB holds 10,000 digests. */
export const MAX_PARSED_BODY = 1024 * 1024;

/** Ends a request that broke a time limit, answering 408 when nothing was answered yet. */
export type CutRequest = (req: Request, res: Response, message: string) => void;

const hasBody = (req: IncomingMessage) =>
  req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;

type BodyType = string[] | ((req: IncomingMessage) => boolean);

/**
 * A JSON parser for bodies of `type` of at most `limit` bytes (decompressed). A declared length
 * beyond it is refused before a byte is read (body-parser would read the whole body first).
 */
export function jsonBody(limit: number = MAX_PARSED_BODY, type: BodyType = ['application/json', 'application/*+json']): RequestHandler {
  return capped(limit, type, express.json({ limit, type, verify: hashParsedBody }));
}

/** A form (`application/x-www-form-urlencoded`) parser, capped as `jsonBody` is. */
export function formBody(limit: number = MAX_PARSED_BODY): RequestHandler {
  const type = ['application/x-www-form-urlencoded'];
  return capped(limit, type, express.urlencoded({ extended: false, limit, type, verify: hashParsedBody }));
}

function capped(limit: number, type: BodyType, parser: RequestHandler): RequestHandler {
  return (req, res, next) => {
    const identity = (req.headers['content-encoding'] ?? 'identity').toLowerCase() === 'identity';
    const ours = !req.readableEnded && (typeof type === 'function' ? type(req) : Boolean(req.is(type)));
    if (ours && identity && Number(req.headers['content-length']) > limit) {
      return next(tooLarge(`a request body here may hold at most ${limit} bytes`));
    }
    parser(req, res, next);
  };
}

/**
 * Cuts a request whose body stops arriving. Over each window of `bodyRateWindowMs` at least
 * `minBodyBytesPerSecond` per second of it must come in, so a push at any real speed runs as
 * long as it needs while a trickle is cut within about two windows. Bytes are counted on the
 * socket, and a window is not held against the client when the server held the body back
 * (bytes wait in the request's buffer: backpressure) or the timer ran late (a busy event loop
 * had not read the socket yet). The watch ends when the body is complete or the answer is over.
 */
export function bodyRateWatch(timeouts: Config['timeouts'], cut: CutRequest): RequestHandler {
  const { bodyRateWindowMs: windowMs, minBodyBytesPerSecond } = timeouts;
  const minBytes = Math.max(1, Math.floor((minBodyBytesPerSecond * windowMs) / 1000));
  return (req, res, next) => {
    if (!hasBody(req) || req.complete) return next();
    const socket = req.socket;
    let counted = socket.bytesRead;
    let windowStart = performance.now();
    const timer = setInterval(() => {
      if (req.complete) return stop();
      const now = performance.now();
      const late = now - windowStart > windowMs * 1.5;
      const received = socket.bytesRead - counted;
      counted = socket.bytesRead;
      windowStart = now;
      if (late || req.readableLength > 0 || received >= minBytes) return;
      stop();
      cut(req, res, `the request body arrived slower than ${minBodyBytesPerSecond} bytes per second`);
    }, windowMs);
    timer.unref();
    const stop = () => clearInterval(timer);
    res.once('close', stop);
    next();
  };
}

/**
 * Wraps a parser that reads a body whole (JSON, forms): the body must be complete within
 * `bufferedBodyMs` of the parser starting, however steadily it trickles.
 */
export function withBodyDeadline(parser: RequestHandler, timeouts: Config['timeouts'], cut: CutRequest): RequestHandler {
  const ms = timeouts.bufferedBodyMs;
  return (req, res, next) => {
    if (!hasBody(req) || req.complete) return parser(req, res, next);
    const timer = setTimeout(() => cut(req, res, `the request body did not arrive within ${ms} ms`), ms);
    timer.unref();
    parser(req, res, (err?: unknown) => {
      clearTimeout(timer);
      next(err);
    });
  };
}
