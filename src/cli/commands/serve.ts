import { defineCommand } from '../command.js';
import { UsageError } from '../errors.js';
import { configFrom, loadServer } from '../in-process.js';

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) throw new UsageError(`bad --port "${text}": expected 0-65535`);
  return port;
}

export const serve = defineCommand({
  name: 'serve',
  args: [],
  flagsUsage: '[--host H] [--port P] [--data-dir D]',
  summary: 'Run the snapfork server until SIGTERM or SIGINT, then shut down gracefully.',
  flags: {
    host: { type: 'string' },
    port: { type: 'string' },
    'data-dir': { type: 'string' },
  },
  async run(io, _positionals, flags) {
    const config = configFrom(io, {
      host: flags.host,
      port: flags.port === undefined ? undefined : parsePort(flags.port),
      dataDir: flags['data-dir'],
    });
    const { startServer } = await loadServer();
    // JSON log lines on stdout, the first saying where the server listens.
    const server = await startServer(config, { logDestination: io.stdout });
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      const stop = (sig: NodeJS.Signals) => {
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        resolve(sig);
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
    server.logger.info({ signal }, `${signal}, closing`);
    await server.close();
  },
});
