// The browser builds of the npm Bayeux clients in headless Chromium, each
// subscribing and receiving a /push: cometd's ES modules on a page of
// another origin than the server's (another port) with --cors-origins
// naming it, whose credentialed cross-origin requests the server's CORS
// must grant on the Bayeux paths; and faye's client/faye-browser.js on a
// page of the server's own origin. (Faye on another origin makes its
// handshake with callback-polling, JSONP, which the server does not serve.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { HERE, LongpollServer, freePort, waitFor, launchBrowser } from './helpers.mjs';

let browser;
let pages; // the page server, on its own origin
let server;

/** startPageServer serves a blank page and cometd's modules on 127.0.0.1:port. */
function startPageServer(port) {
  const srv = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let file = null;
    if (url.pathname === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<!doctype html><meta charset="utf-8"><title>bayeux</title><link rel="icon" href="data:,">');
      return;
    }
    if (url.pathname.startsWith('/cometd/') && /^[A-Za-z0-9]+\.js$/.test(path.basename(url.pathname))) {
      file = path.join(HERE, 'node_modules', 'cometd', path.basename(url.pathname));
    }
    if (!file) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/javascript' });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => srv.listen(port, '127.0.0.1', () => resolve(srv)));
}

before(async () => {
  const pagePort = await freePort();
  pages = await startPageServer(pagePort);
  pages.origin = `http://127.0.0.1:${pagePort}`;
  server = new LongpollServer({ port: await freePort(), args: ['--heartbeat-interval', '0', '--cors-origins', pages.origin] });
  await server.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  pages?.close();
});

/** newPage opens url in a fresh context and collects its console errors. */
async function newPage(url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(url);
  return { page, errors, close: () => context.close() };
}

test('Faye in a browser on the server\'s origin: long-polling, subscribe, receive a push', async () => {
  const { page, errors, close } = await newPage(server.url + '/healthz'); // any page of the server's origin
  try {
    await page.addScriptTag({ content: readFileSync(path.join(HERE, 'node_modules', 'faye', 'client', 'faye-browser.js'), 'utf8') });
    const type = await page.evaluate(async () => {
      window.got = [];
      const client = new Faye.Client(location.origin + '/bayeux', { timeout: 40, retry: 1 });
      client.disable('websocket');
      client.disable('eventsource');
      client.addExtension({
        outgoing(message, callback) {
          if (message.channel === '/meta/handshake') message.ext = { deviceId: 'faye-browser' };
          callback(message);
        },
      });
      await client.subscribe('/news', (data) => window.got.push(data));
      window.faye = client;
      return client._dispatcher.connectionType;
    });
    assert.equal(type, 'long-polling');
    assert.equal((await server.push({ to: { topic: 'news' }, data: { n: 1 } })).status, 202);
    await waitFor(() => page.evaluate(() => window.got.length > 0), { what: 'the push in the Faye page' });
    assert.deepEqual(await page.evaluate(() => window.got), [{ n: 1 }]);
    assert.deepEqual(errors, []);
  } finally {
    await page.evaluate(() => window.faye?.disconnect()).catch(() => {});
    await close();
  }
});

test('CometD in a browser on another origin: credentialed long-polling, subscribe, receive a push', async () => {
  const { page, errors, close } = await newPage(pages.origin + '/');
  try {
    await page.addScriptTag({ type: 'module', content: "import { CometD } from '/cometd/cometd.js'; window.CometD = CometD;" });
    await page.waitForFunction(() => window.CometD, null, { timeout: 10000 });
    const reply = await page.evaluate(async (url) => {
      window.got = [];
      const cometd = new CometD();
      cometd.unregisterTransport('websocket');
      cometd.configure({ url: url + '/bayeux', logLevel: 'warn' });
      window.cometd = cometd;
      const hs = await new Promise((resolve) => cometd.handshake({ ext: { deviceId: 'cometd-browser' } }, resolve));
      if (!hs.successful) return hs;
      return new Promise((resolve) => cometd.subscribe('/news', (m) => window.got.push(m.data), resolve));
    }, server.url);
    assert.equal(reply.successful, true, JSON.stringify(reply));
    assert.equal(await page.evaluate(() => window.cometd.getTransport().type), 'long-polling');
    assert.equal((await server.push({ to: { topic: 'news' }, data: { n: 2 } })).status, 202);
    await waitFor(() => page.evaluate(() => window.got.length > 0), { what: 'the push in the CometD page' });
    assert.deepEqual(await page.evaluate(() => window.got), [{ n: 2 }]);
    assert.deepEqual(errors, []);
  } finally {
    await page.evaluate(() => window.cometd?.disconnect()).catch(() => {});
    await close();
  }
});
