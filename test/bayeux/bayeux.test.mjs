// The unmodified npm Bayeux clients (cometd with cometd-nodejs-client, and
// faye), forced to the long-polling transport, against the real longpoll
// binary: handshake, subscribe to a channel and a wildcard, receive a
// /push, publish to a native session, the direct channel, unsubscribe,
// disconnect; and a CometD client with the acknowledgement extension that
// loses nothing across a dropped connection and a SIGKILL restart on
// --data-dir. Every wait is bounded (waitFor); ports are on 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { adapt } from 'cometd-nodejs-client';
import { CometD, AckExtension } from 'cometd';
import faye from 'faye';
import { LongpollServer, freePort, waitFor } from '../browser/helpers.mjs';

adapt(); // XMLHttpRequest for CometD in Node

/** newCometD returns a CometD client on url with long-polling only. */
function newCometD(url, { ack = false } = {}) {
  const cometd = new CometD();
  for (const t of cometd.getTransportTypes()) {
    if (t !== 'long-polling') cometd.unregisterTransport(t);
  }
  assert.deepEqual(cometd.getTransportTypes(), ['long-polling']);
  if (ack) cometd.registerExtension('ack', new AckExtension());
  cometd.configure({ url, logLevel: 'warn', backoffIncrement: 100, maxBackoff: 500, maxNetworkDelay: 5000 });
  return cometd;
}

/** call turns a CometD callback API into a promise of its reply message. */
function call(fn) {
  return new Promise((resolve) => fn(resolve));
}

/** connectNative makes a native longpoll session and returns {id, poll()} where poll() answers the next batch. */
async function connectNative(server, deviceId, topics) {
  const res = await fetch(`${server.url}/connect`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ deviceId, topics }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  const { sessionId } = await res.json();
  let cursor = 0;
  return {
    id: sessionId,
    async poll() {
      const r = await fetch(`${server.url}/data?sessionId=${sessionId}&cursor=${cursor}&timeout=5`);
      if (r.status === 204) return [];
      assert.equal(r.status, 200, await r.clone().text());
      const { messages } = await r.json();
      if (messages.length) cursor = messages[messages.length - 1].seq;
      return messages;
    },
  };
}

/** nextFrom polls a native session until a message on topic arrives (bounded) and returns it. */
async function nextFrom(native, topic) {
  let found = null;
  await waitFor(async () => {
    for (const m of await native.poll()) if (m.topic === topic) found = m;
    return found;
  }, { timeoutMs: 10000, what: `a message on ${topic} for the native session` });
  return found;
}

// LONGPOLL_EXTRA_ARGS (run.sh sets it for a second pass on Redis) goes to
// every server startServer starts; on Redis each server is a deployment of
// its own (--redis-prefix), as a fresh in-memory server would be.
const extraArgs = (process.env.LONGPOLL_EXTRA_ARGS || '').split(' ').filter(Boolean);
let deployments = 0;

async function startServer(args = []) {
  const own = extraArgs.includes('--redis-url') ? ['--redis-prefix', `bayeux${process.pid}-${++deployments}`] : [];
  const server = new LongpollServer({ port: await freePort(), args: [...args, ...extraArgs, ...own] });
  await server.start();
  return server;
}

async function presence(server, deviceId) {
  const r = await fetch(`${server.url}/presence?deviceId=${encodeURIComponent(deviceId)}`);
  assert.equal(r.status, 200);
  const { sessions } = await r.json();
  return { online: sessions.length > 0, sessions };
}

test('CometD: handshake, subscribe, wildcard, push, publish to a native session, direct, unsubscribe, disconnect', async () => {
  const server = await startServer();
  const cometd = newCometD(`${server.url}/bayeux`);
  try {
    const hs = await call((cb) => cometd.handshake({ ext: { deviceId: 'cometd-1' } }, cb));
    assert.equal(hs.successful, true, JSON.stringify(hs));
    assert.equal(cometd.getTransport().type, 'long-polling');
    assert.ok(hs.clientId);

    const got = [];
    const chat = cometd.subscribe('/chat', (m) => got.push(['chat', m.data]));
    cometd.subscribe('/news/*', (m) => got.push(['news', m.channel, m.data]));
    cometd.addListener('/longpoll/direct', (m) => got.push(['direct', m.data]));
    await waitFor(() => cometd.getStatus() === 'connected', { what: 'CometD connected' });
    // A subscribe's reply comes back before the next message on the channel: wait for both.
    await waitFor(async () => (await presence(server, 'cometd-1')).online, { what: 'cometd-1 online' });
    const subscribed = await call((cb) => cometd.subscribe('/sync', () => {}, cb));
    assert.equal(subscribed.successful, true, JSON.stringify(subscribed));

    assert.equal((await server.push({ to: { topic: 'chat' }, data: { n: 1 } })).status, 202);
    assert.equal((await server.push({ to: { topic: 'news/today' }, data: { n: 2 } })).status, 202);
    assert.equal((await server.push({ to: { topic: 'news/today/deep' }, data: { n: 3 } })).status, 202); // not /news/*
    assert.equal((await server.push({ to: { deviceId: 'cometd-1' }, data: { n: 4 } })).status, 202);
    await waitFor(() => got.length >= 3, { what: 'three messages at the CometD client' });
    assert.deepEqual(got, [['chat', { n: 1 }], ['news', '/news/today', { n: 2 }], ['direct', { n: 4 }]]);

    // Publish to a native session subscribed to the topic: from is the CometD client's device.
    const native = await connectNative(server, 'native-1', ['chat']);
    const pub = await call((cb) => cometd.publish('/chat', { text: 'hi' }, cb));
    assert.equal(pub.successful, true, JSON.stringify(pub));
    const m = await nextFrom(native, 'chat');
    assert.deepEqual(m.data, { text: 'hi' });
    assert.equal(m.from, 'cometd-1');
    await waitFor(() => got.length >= 4, { what: 'the CometD client hearing its own publish' });
    assert.deepEqual(got[3], ['chat', { text: 'hi' }]);

    // Unsubscribe: a later chat push does not come; a news push after it does, so it would have come before.
    const unsub = await call((cb) => cometd.unsubscribe(chat, cb));
    assert.equal(unsub.successful, true, JSON.stringify(unsub));
    assert.equal((await server.push({ to: { topic: 'chat' }, data: { n: 5 } })).status, 202);
    assert.equal((await server.push({ to: { topic: 'news/late' }, data: { n: 6 } })).status, 202);
    await waitFor(() => got.length >= 5, { what: 'the news push after the unsubscribe' });
    assert.deepEqual(got.slice(4), [['news', '/news/late', { n: 6 }]]);

    const bye = await call((cb) => cometd.disconnect(cb));
    assert.equal(bye.successful, true, JSON.stringify(bye));
    await waitFor(async () => !(await presence(server, 'cometd-1')).online, { what: 'cometd-1 offline after disconnect' });
  } finally {
    if (cometd.getStatus() !== 'disconnected') cometd.disconnect();
    await server.stop();
  }
});

test('Faye: handshake, subscribe, wildcard, push, publish to a native session, direct, unsubscribe, disconnect', async () => {
  const server = await startServer();
  const client = new faye.Client(`${server.url}/bayeux`, { timeout: 40, retry: 1 });
  client.disable('websocket');
  client.disable('eventsource');
  // Every probe the server sends, as it arrives on the wire: the client
  // itself drops one that comes on /chat after chat.cancel().
  const wireProbes = [];
  client.addExtension({
    outgoing(message, callback) {
      if (message.channel === '/meta/handshake') message.ext = { ...(message.ext || {}), deviceId: 'faye-1' };
      callback(message);
    },
    incoming(message, callback) {
      if (message.data && message.data.probe) wireProbes.push(message.channel);
      callback(message);
    },
  });
  try {
    const got = [];
    const chat = client.subscribe('/chat', (data) => got.push(['chat', data]));
    const news = client.subscribe('/news/**', (data) => got.push(['news', data]));
    const direct = client.subscribe('/longpoll/direct', (data) => got.push(['direct', data]));
    await Promise.all([chat, news, direct]);
    assert.equal(client._dispatcher.connectionType, 'long-polling');
    assert.equal((await presence(server, 'faye-1')).online, true);

    assert.equal((await server.push({ to: { topic: 'chat' }, data: { n: 1 } })).status, 202);
    assert.equal((await server.push({ to: { topic: 'news/a/b' }, data: { n: 2 } })).status, 202);
    assert.equal((await server.push({ to: { deviceId: 'faye-1' }, data: { n: 3 } })).status, 202);
    await waitFor(() => got.length >= 3, { what: 'three messages at the Faye client' });
    assert.deepEqual(got, [['chat', { n: 1 }], ['news', { n: 2 }], ['direct', { n: 3 }]]);

    const native = await connectNative(server, 'native-2', ['chat']);
    await client.publish('/chat', { text: 'from faye' });
    const m = await nextFrom(native, 'chat');
    assert.deepEqual(m.data, { text: 'from faye' });
    assert.equal(m.from, 'faye-1');
    await waitFor(() => got.length >= 4, { what: 'the Faye client hearing its own publish' });

    chat.cancel(); // unsubscribes
    // The unsubscribe goes out with the client's next request: push probes
    // until one reaches the native session alone. Each probe that still
    // reached the Faye client's session (delivered 2) must arrive there.
    let reachedFaye = 0;
    await waitFor(async () => {
      const r = await server.push({ to: { topic: 'chat' }, data: { probe: true } });
      assert.equal(r.status, 202);
      if (r.body.delivered === 2) reachedFaye++;
      return r.body.delivered === 1;
    }, { what: 'the Faye unsubscribe to reach the server' });
    assert.equal((await server.push({ to: { topic: 'chat' }, data: { n: 8 } })).status, 202);
    assert.equal((await server.push({ to: { topic: 'news/x' }, data: { n: 9 } })).status, 202);
    await waitFor(() => got.some((g) => g[0] === 'news' && g[1].n === 9), { what: 'the news push after the unsubscribe' });
    // Every probe that reached the session arrives once. One answered
    // while the session still had the topic comes on /chat, which the
    // client drops after chat.cancel(); one answered after the
    // unsubscribe comes on /longpoll/direct, which the client receives.
    assert.equal(wireProbes.length, reachedFaye, `probes on the wire: ${wireProbes}`);
    assert.ok(wireProbes.every((ch) => ch === '/chat' || ch === '/longpoll/direct'), `probe channels: ${wireProbes}`);
    assert.equal(got.filter((g) => g[1].probe).length, wireProbes.filter((ch) => ch === '/longpoll/direct').length);
    assert.ok(!got.some((g) => g[0] === 'chat' && g[1].n === 8), 'a chat push after the unsubscribe reached the client');

    await client.disconnect();
    await waitFor(async () => !(await presence(server, 'faye-1')).online, { what: 'faye-1 offline after disconnect' });
  } finally {
    client.disconnect();
    await server.stop();
  }
});

/**
 * A TCP proxy in front of the server that can drop every answer (the
 * connection is cut when the server's first bytes arrive): a client then
 * never sees what the server handed it.
 */
function startProxy(targetPort) {
  const state = { mode: 'pass', droppedEvents: 0, sockets: new Set() };
  const srv = net.createServer((down) => {
    const up = net.connect(targetPort, '127.0.0.1');
    state.sockets.add(down);
    state.sockets.add(up);
    const close = () => {
      down.destroy();
      up.destroy();
      state.sockets.delete(down);
      state.sockets.delete(up);
    };
    down.on('data', (d) => up.write(d));
    up.on('data', (d) => {
      if (state.mode === 'drop') {
        if (d.toString().includes('"channel":"/n"')) state.droppedEvents++;
        close();
        return;
      }
      down.write(d);
    });
    down.on('error', close).on('close', close);
    up.on('error', close).on('close', close);
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => {
    state.url = `http://127.0.0.1:${srv.address().port}`;
    state.close = () => {
      for (const s of state.sockets) s.destroy();
      srv.close();
    };
    resolve(state);
  }));
}

test('CometD with the ack extension loses nothing across a dropped answer and a SIGKILL restart on --data-dir', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'longpoll-bayeux-'));
  const port = await freePort();
  const args = ['--data-dir', dir];
  let server = new LongpollServer({ port, args });
  await server.start();
  const proxy = await startProxy(port);
  const cometd = newCometD(`${proxy.url}/bayeux`, { ack: true });
  let handshakes = 0;
  cometd.addListener('/meta/handshake', (m) => m.successful && handshakes++);
  const got = [];
  const push = async (n) => assert.equal((await server.push({ to: { topic: 'n' }, data: n })).status, 202);
  try {
    const hs = await call((cb) => cometd.handshake({ ext: { deviceId: 'acker' } }, cb));
    assert.equal(hs.successful, true, JSON.stringify(hs));
    assert.deepEqual(hs.ext, { ack: true });
    const sub = await call((cb) => cometd.subscribe('/n', (m) => got.push(m.data), cb));
    assert.equal(sub.successful, true, JSON.stringify(sub));
    for (let n = 1; n <= 5; n++) await push(n);
    await waitFor(() => got.length >= 5, { what: 'messages 1-5' });

    // Answers are cut off: the server hands out 6-15, the client never sees them.
    proxy.mode = 'drop';
    for (let n = 6; n <= 15; n++) await push(n);
    await waitFor(() => proxy.droppedEvents > 0, { what: 'an answer carrying messages to be dropped' });
    assert.deepEqual(got, [1, 2, 3, 4, 5]);

    // kill -9 while the client has not acknowledged 6-15, and start again on the same directory.
    server.child.kill('SIGKILL');
    await server.child.exited;
    server.child = null;
    server = new LongpollServer({ port, args });
    await server.start();
    proxy.mode = 'pass';
    for (let n = 16; n <= 20; n++) await push(n);
    await waitFor(() => got.length >= 20, { timeoutMs: 20000, what: 'messages 1-20 after the restart' });
    await push(21); // anything duplicated would come before it
    await waitFor(() => got.includes(21), { what: 'message 21' });
    assert.deepEqual(got, Array.from({ length: 21 }, (_, i) => i + 1));
    assert.equal(handshakes, 1, 'the client kept its clientId across the restart');
  } finally {
    if (cometd.getStatus() !== 'disconnected') cometd.disconnect();
    proxy.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a server restart without --data-dir: CometD and Faye handshake again, subscribe again, and receive', async () => {
  const port = await freePort();
  let server = new LongpollServer({ port, args: ['--heartbeat-interval', '0'] });
  await server.start();
  const cometd = newCometD(`${server.url}/bayeux`);
  const faye_ = new faye.Client(`${server.url}/bayeux`, { timeout: 40, retry: 1 });
  faye_.disable('websocket');
  faye_.disable('eventsource');
  let handshakes = 0;
  const got = [];
  try {
    // CometD: subscriptions are made in the handshake callback, which runs again after every re-handshake.
    cometd.handshake({ ext: { deviceId: 'cometd-r' } }, (reply) => {
      if (!reply.successful) return;
      handshakes++;
      cometd.subscribe('/r', (m) => got.push(['cometd', m.data]));
    });
    await faye_.subscribe('/r', (data) => got.push(['faye', data])); // Faye subscribes again by itself
    const pushReaches = async (n) => {
      await waitFor(async () => {
        const r = await server.push({ to: { topic: 'r' }, data: { probe: true } });
        return r.status === 202 && r.body.delivered === n;
      }, { timeoutMs: 20000, what: `${n} subscribers of /r` });
    };
    await pushReaches(2);
    assert.equal((await server.push({ to: { topic: 'r' }, data: 1 })).status, 202);
    await waitFor(() => got.filter((g) => g[1] === 1).length === 2, { what: 'message 1 at both clients' });

    await server.stop(); // memory mode: every session is gone
    server = new LongpollServer({ port, args: ['--heartbeat-interval', '0'] });
    await server.start();
    await pushReaches(2); // both handshook again and subscribed again
    assert.equal((await server.push({ to: { topic: 'r' }, data: 2 })).status, 202);
    await waitFor(() => got.filter((g) => g[1] === 2).length === 2, { timeoutMs: 20000, what: 'message 2 at both clients' });
    assert.equal(handshakes, 2);
  } finally {
    if (cometd.getStatus() !== 'disconnected') cometd.disconnect();
    faye_.disconnect();
    await server.stop();
  }
});
