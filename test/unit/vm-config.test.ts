/** The snapfork-vm.json of a bootable commit (storage/README.md) and the bounds on a VM's labels. */
import { describe, expect, it } from 'vitest';
import { isDomainError } from '../../src/domain/errors.js';
import { labelsProblem, parseVmConfig } from '../../src/domain/vm-config.js';

const parse = (text: string) => parseVmConfig(Buffer.from(text));

function refusal(text: string): string {
  try {
    parse(text);
  } catch (e) {
    if (isDomainError(e) && e.kind === 'unprocessable') return e.message;
    throw e;
  }
  throw new Error(`${text} was accepted`);
}

describe('parseVmConfig', () => {
  it('defaults every absent field, and takes sizes within the caps', () => {
    expect(parse('{}')).toEqual({ vcpuCount: 1, memSizeMib: 256, kernel: 'default.bin' });
    expect(parse('{"vcpu_count": 4, "mem_size_mib": 4096, "kernel": "default.bin"}')).toEqual({ vcpuCount: 4, memSizeMib: 4096, kernel: 'default.bin' });
  });

  it('refuses, naming the file and the fault: not JSON, not an object, unknown fields, sizes past the caps, another kernel, too large', () => {
    expect(refusal('{')).toBe('snapfork-vm.json: not JSON');
    expect(refusal('[1]')).toBe('snapfork-vm.json: not a JSON object');
    expect(refusal('{"vcpus": 2}')).toBe('snapfork-vm.json: unknown field vcpus (known: vcpu_count, mem_size_mib, kernel)');
    expect(refusal('{"vcpu_count": 0}')).toBe('snapfork-vm.json: vcpu_count must be an integer from 1 to 4');
    expect(refusal('{"vcpu_count": "2"}')).toBe('snapfork-vm.json: vcpu_count must be an integer from 1 to 4');
    expect(refusal('{"mem_size_mib": 127}')).toBe('snapfork-vm.json: mem_size_mib must be an integer from 128 to 4096');
    expect(refusal('{"mem_size_mib": 300.5}')).toBe('snapfork-vm.json: mem_size_mib must be an integer from 128 to 4096');
    expect(refusal('{"kernel": "vmlinuz"}')).toBe('snapfork-vm.json: kernel "vmlinuz" not found: this server boots default.bin');
    expect(refusal(`{"kernel": "default.bin", "pad": "${'x'.repeat(4096)}"}`)).toBe('snapfork-vm.json: larger than 4096 bytes');
  });
});

describe('labelsProblem', () => {
  it('takes up to 32 labels of bounded names and values', () => {
    expect(labelsProblem({})).toBeUndefined();
    expect(labelsProblem(Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`k${i}`.padEnd(64, 'x'), 'v'.repeat(256)])))).toBeUndefined();
    expect(labelsProblem(Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])))).toBe('at most 32 labels');
    expect(labelsProblem({ '': 'v' })).toBe('label names must have 1 to 64 characters');
    expect(labelsProblem({ ['k'.repeat(65)]: 'v' })).toBe('label names must have 1 to 64 characters');
    expect(labelsProblem({ k: 'v'.repeat(257) })).toBe('label k: values are strings of at most 256 characters');
  });
});
