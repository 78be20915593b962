// Shared helpers for the browser and client tests: bounded waits, the real
// server binary on a loopback port, and headless Chromium.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, existsSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');
export const ARTIFACTS = path.join(HERE, 'artifacts');

/** waitFor polls cond() every intervalMs until it returns a truthy value or timeoutMs passes (then throws). */
export async function waitFor(cond, { timeoutMs = 10000, intervalMs = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${lastErr.message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** freePort asks the kernel for a free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

let builtBinary = null;

/** serverBinary returns $LONGPOLL_BIN, or builds ./cmd/longpoll once into a temp dir. */
export function serverBinary() {
  if (process.env.LONGPOLL_BIN) return process.env.LONGPOLL_BIN;
  if (builtBinary) return builtBinary;
  const out = path.join(mkdtempSync(path.join(os.tmpdir(), 'longpoll-bin-')), 'longpoll');
  execFileSync('go', ['build', '-o', out, './cmd/longpoll'], { cwd: ROOT, stdio: 'inherit' });
  builtBinary = out;
  return out;
}

const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try {
      child.kill('SIGKILL');
    } catch {}
  }
});

/**
 * LongpollServer runs the real binary on 127.0.0.1:port with the given flags;
 * start() waits (bounded) for GET /healthz, stop() sends SIGTERM and waits for exit.
 */
export class LongpollServer {
  constructor({ port, args = [] }) {
    this.port = port;
    this.args = args;
    this.url = `http://127.0.0.1:${port}`;
    this.child = null;
    this.log = '';
  }

  async start({ timeoutMs = 15000 } = {}) {
    const child = spawn(serverBinary(), ['--addr', `127.0.0.1:${this.port}`, ...this.args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env },
    });
    this.child = child;
    running.add(child);
    const append = (d) => {
      this.log += d.toString();
      if (this.log.length > 200000) this.log = this.log.slice(-100000);
    };
    child.stdout.on('data', append);
    child.stderr.on('data', append);
    child.exited = new Promise((resolve) => child.on('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }));
    let exitedEarly = null;
    child.exited.then((r) => (exitedEarly = r));
    await waitFor(async () => {
      if (exitedEarly) throw new Error(`server exited early (${JSON.stringify(exitedEarly)}):\n${this.log}`);
      const res = await fetch(`${this.url}/healthz`);
      return res.status === 200;
    }, { timeoutMs, intervalMs: 50, what: `GET ${this.url}/healthz` });
  }

  /** stop sends SIGTERM and waits for the exit (SIGKILL after timeoutMs); it returns {code, signal}. */
  async stop({ timeoutMs = 10000 } = {}) {
    const child = this.child;
    if (!child) return null;
    this.child = null;
    if (child.exitCode !== null || child.signalCode !== null) return child.exited;
    child.kill('SIGTERM');
    let timer;
    const killed = new Promise((resolve) => {
      timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(null);
      }, timeoutMs);
    });
    const r = await Promise.race([child.exited, killed]);
    clearTimeout(timer);
    if (r === null) throw new Error(`server did not exit within ${timeoutMs} ms of SIGTERM:\n${this.log.slice(-4000)}`);
    return r;
  }

  /** push POSTs to /push from loopback (allowed when no publish key is set) and returns {status, body}. */
  async push(payload) {
    const res = await fetch(`${this.url}/push`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(payload),
    });
    const text = await res.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = text;
    }
    return { status: res.status, body };
  }
}

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/**
 * launchBrowser starts Debian's Chromium through playwright-core. Playwright
 * gives each launch a fresh temporary --user-data-dir; each test makes its
 * own context.
 */
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`${CHROMIUM_PATH} is missing: run test/browser/run.sh (it installs Debian's chromium)`);
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS, timeout: 30000 });
}

export function artifactPath(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}
