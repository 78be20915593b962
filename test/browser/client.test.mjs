// Tests of public/longpoll.js in Node against a scripted fake server on
// 127.0.0.1: cursor bookkeeping, dedupe, and each failure rule of the client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { waitFor } from './helpers.mjs';
import { LongPollClient, LongPollError, backoffDelay, DEFAULT_BACKOFF } from '../../public/longpoll.js';

/**
 * fakeServer answers each request with handler({method, path, query, body, req}).
 * The handler returns {status, body}, 'hang' (never answers; cleaned up when
 * the client aborts) or 'destroy' (drops the connection: a network error).
 */
async function fakeServer(handler) {
  const requests = [];
  const server = http.createServer(async (req, res) => {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    const u = new URL(req.url, 'http://x');
    const r = {
      method: req.method,
      path: u.pathname,
      query: Object.fromEntries(u.searchParams),
      body: raw ? JSON.parse(raw) : undefined,
      at: Date.now(),
      req,
    };
    requests.push(r);
    const out = await handler(r);
    if (out === 'hang') return;
    if (out === 'destroy') {
      req.socket.destroy();
      return;
    }
    const { status, body } = out;
    if (status === 204) {
      res.writeHead(204);
      res.end();
      return;
    }
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    polls: () => requests.filter((r) => r.path === '/data'),
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    },
  };
}

const err = (status, code) => ({ status, body: { error: { code, message: `fake ${code}` } } });
const msg = (seq, extra = {}) => ({ seq, id: `m_${seq}`, topic: 't', from: 'srv', data: { n: seq }, sentAt: new Date().toISOString(), ...extra });
const connected = (sessionId, extra = {}) => ({
  status: 201,
  body: { sessionId, deviceId: 'dev-1', topics: [], cursor: 0, pollTimeout: 30, sessionTTL: 300, ...extra },
});

/** mk builds a client that is disconnected when the test ends, pass or fail. */
function mk(t, opts) {
  const client = new LongPollClient(opts);
  t.after(() => client.disconnect());
  return client;
}

function collect(client) {
  const seen = { messages: [], statuses: [], errors: [], sessions: [] };
  client.on('message', (m) => seen.messages.push(m));
  client.on('status', (s) => seen.statuses.push(s));
  client.on('error', (e) => seen.errors.push(e));
  client.on('session', (s) => seen.sessions.push(s));
  return seen;
}

test('backoffDelay grows from about 0.5 s to at most 30 s, with jitter', () => {
  assert.equal(backoffDelay(0, DEFAULT_BACKOFF, () => 0), 500);
  assert.equal(backoffDelay(0, DEFAULT_BACKOFF, () => 1), 250);
  assert.equal(backoffDelay(1, DEFAULT_BACKOFF, () => 0), 1000);
  assert.equal(backoffDelay(5, DEFAULT_BACKOFF, () => 0), 16000);
  assert.equal(backoffDelay(6, DEFAULT_BACKOFF, () => 0), 30000);
  assert.equal(backoffDelay(60, DEFAULT_BACKOFF, () => 0), 30000);
  for (let a = 0; a < 12; a++) {
    const d = backoffDelay(a);
    const base = Math.min(30000, 500 * 2 ** a);
    assert.ok(d >= base / 2 && d <= base, `attempt ${a}: ${d} not in [${base / 2}, ${base}]`);
  }
});

test('connect, deliver in order, acknowledge with the cursor, skip re-sent messages', async (t) => {
  let poll = 0;
  const srv = await fakeServer(({ path }) => {
    if (path === '/connect') return connected('s1');
    if (path === '/data') {
      poll++;
      if (poll === 1) return { status: 200, body: { cursor: 2, messages: [msg(1), msg(2)] } };
      if (poll === 2) return { status: 204 };
      // The server re-sends 1 and 2 (as if the ack were lost) along with 3.
      if (poll === 3) return { status: 200, body: { cursor: 3, messages: [msg(1), msg(2), msg(3)] } };
      return 'hang';
    }
    if (path === '/session') return { status: 204 };
    return err(404, 'not_found');
  });
  t.after(() => srv.close());
  const client = mk(t, { baseUrl: srv.url, deviceId: 'dev-1', userId: 'u1', topics: ['a', '$presence'] });
  const seen = collect(client);
  const session = await client.connect();
  assert.equal(session.sessionId, 's1');
  await waitFor(() => seen.messages.length === 3 && srv.polls().length >= 4, { what: '3 messages and a 4th poll' });
  assert.deepEqual(seen.messages.map((m) => m.seq), [1, 2, 3]);
  assert.deepEqual(srv.polls().map((p) => p.query.cursor), ['0', '2', '2', '3']);
  assert.ok(srv.polls().every((p) => p.query.sessionId === 's1'));
  assert.deepEqual(srv.requests[0].body, { deviceId: 'dev-1', userId: 'u1', topics: ['a', '$presence'] });
  assert.equal(client.stats.duplicates, 2);
  assert.equal(client.state, 'connected');
  await client.disconnect();
  assert.equal(client.state, 'closed');
  assert.equal(client.closeReason, 'disconnected');
  const del = srv.requests.find((r) => r.method === 'DELETE');
  assert.equal(del.path, '/session');
  assert.equal(del.query.sessionId, 's1');
  assert.equal(seen.errors.length, 0);
});

test('204 re-polls at once', async (t) => {
  let poll = 0;
  const srv = await fakeServer(({ path }) => {
    if (path === '/connect') return connected('s1');
    if (path === '/data') {
      poll++;
      if (poll <= 5) return { status: 204 };
      if (poll === 6) return { status: 200, body: { cursor: 1, messages: [msg(1)] } };
      return 'hang';
    }
    return { status: 204 };
  });
  t.after(() => srv.close());
  // A long backoff: any retry delay would blow the time limit below.
  const client = mk(t, { baseUrl: srv.url, deviceId: 'dev-1', backoff: { initialMs: 5000 } });
  const seen = collect(client);
  const t0 = Date.now();
  await client.connect();
  await waitFor(() => seen.messages.length === 1, { what: 'the message after five 204s' });
  assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
  assert.equal(seen.errors.length, 0);
  assert.ok(srv.polls().slice(0, 6).every((p) => p.query.timeout === undefined), 'normal polls use the server default hold');
  await client.disconnect();
});

test('network errors and 503 back off exponentially, then the poll resumes with the same cursor', async (t) => {
  let poll = 0;
  const srv = await fakeServer(({ path }) => {
    if (path === '/connect') return connected('s1');
    if (path === '/data') {
      poll++;
      if (poll === 1) return { status: 200, body: { cursor: 1, messages: [msg(1)] } };
      if (poll === 2) return 'destroy';
      if (poll === 3) return err(503, 'unavailable');
      if (poll === 4) return err(500, 'internal');
      if (poll === 5) return 'destroy';
      if (poll === 6) return { status: 200, body: { cursor: 2, messages: [msg(2)] } };
      return 'hang';
    }
    return { status: 204 };
  });
  t.after(() => srv.close());
  const client = mk(t, { baseUrl: srv.url, deviceId: 'dev-1', backoff: { initialMs: 40, maxMs: 120 } });
  const seen = collect(client);
  await client.connect();
  await waitFor(() => seen.messages.length === 2, { what: 'message 2 after the failures' });
  const retries = seen.statuses.filter((s) => s.state === 'reconnecting').map((s) => s.retryInMs);
  assert.equal(retries.length, 4);
  const bases = [40, 80, 120, 120];
  retries.forEach((d, i) => assert.ok(d >= bases[i] / 2 && d <= bases[i], `retry ${i}: ${d} ms not in [${bases[i] / 2}, ${bases[i]}]`));
  assert.deepEqual(seen.errors.map((e) => e.error.code), ['network_error', 'unavailable', 'internal', 'network_error']);
  assert.ok(seen.errors.every((e) => e.willRetry));
  // The poll after message 2 is sent once the client has handed it over: wait for it.
  await waitFor(() => srv.polls().length >= 7, { what: 'the poll after message 2' });
  const polls = srv.polls();
  assert.deepEqual(polls.slice(1, 6).map((p) => p.query.cursor), ['1', '1', '1', '1', '1']);
  // Each retry is a probe (timeout=0), so the client knows at once that the server is back.
  assert.deepEqual(polls.slice(2, 6).map((p) => p.query.timeout), ['0', '0', '0', '0']);
  assert.equal(polls[6].query.timeout, undefined);
  // The gaps between failed polls respect the backoff.
  for (let i = 2; i < 6; i++) assert.ok(polls[i].at - polls[i - 1].at >= retries[i - 2] - 5);
  assert.equal(client.state, 'connected');
  assert.equal(seen.statuses.at(-1).state, 'connected');
  assert.deepEqual(seen.messages.map((m) => m.seq), [1, 2]);
  await client.disconnect();
});

test('404 session_not_found connects again with the same device and resumes without duplicates', async (t) => {
  let sessions = 0;
  const polls = { s1: 0, s2: 0 };
  const srv = await fakeServer(({ path, query }) => {
    if (path === '/connect') return connected(`s${++sessions}`);
    if (path === '/data') {
      const n = ++polls[query.sessionId];
      if (query.sessionId === 's1') {
        if (n === 1) return { status: 200, body: { cursor: 2, messages: [msg(1), msg(2)] } };
        return err(404, 'session_not_found');
      }
      // The new session starts at seq 1 again; it also gets m_2 again (handed
      // over unacknowledged), which must not be shown twice.
      if (n === 1) return { status: 200, body: { cursor: 2, messages: [msg(1, { id: 'm_2' }), msg(2, { id: 'm_new' })] } };
      return 'hang';
    }
    return { status: 204 };
  });
  t.after(() => srv.close());
  const client = mk(t, { baseUrl: srv.url, deviceId: 'dev-1', userId: 'u1', topics: ['x'] });
  const seen = collect(client);
  await client.connect();
  await waitFor(() => seen.messages.length === 3 && client.sessionId === 's2' && polls.s2 >= 2, { what: 'resume on s2' });
  assert.deepEqual(seen.messages.map((m) => m.id), ['m_1', 'm_2', 'm_new']);
  const connects = srv.requests.filter((r) => r.path === '/connect');
  assert.equal(connects.length, 2);
  assert.deepEqual(connects[1].body, connects[0].body);
  assert.deepEqual(seen.sessions.map((s) => [s.session.sessionId, s.resumed]), [['s1', false], ['s2', true]]);
  const s2polls = srv.polls().filter((p) => p.query.sessionId === 's2');
  assert.deepEqual(s2polls.map((p) => p.query.cursor), ['0', '2']);
  assert.equal(seen.errors[0].error.code, 'session_not_found');
  assert.equal(client.stats.duplicates, 1);
  await client.disconnect();
});

for (const [status, code] of [[410, 'session_closed'], [409, 'superseded']]) {
  test(`${status} ${code} stops the loop and says why`, async (t) => {
    const srv = await fakeServer(({ path }) => {
      if (path === '/connect') return connected('s1');
      if (path === '/data') return err(status, code);
      return { status: 204 };
    });
    t.after(() => srv.close());
    const client = mk(t, { baseUrl: srv.url, deviceId: 'dev-1', backoff: { initialMs: 10 } });
    const seen = collect(client);
    await client.connect();
    await waitFor(() => client.state === 'closed', { what: 'closed' });
    assert.equal(client.closeReason, code);
    const last = seen.statuses.at(-1);
    assert.equal(last.state, 'closed');
    assert.equal(last.reason, code);
    assert.equal(last.error.status, status);
    assert.equal(seen.errors.length, 1);
    assert.equal(seen.errors[0].willRetry, false);
    const n = srv.requests.length;
    // Nothing more is sent: give a would-be retry (10 ms backoff) ample time.
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(srv.requests.length, n);
    assert.equal(srv.polls().length, 1);
  });
}

test('a refused connect (400) rejects and does not retry', async (t) => {
  const srv = await fakeServer(() => err(400, 'invalid_payload'));
  t.after(() => srv.close());
  const client = mk(t, { baseUrl: srv.url, deviceId: 'bad id!', backoff: { initialMs: 10 } });
  await assert.rejects(client.connect(), (e) => e instanceof LongPollError && e.code === 'invalid_payload' && e.status === 400);
  assert.equal(client.state, 'closed');
  assert.equal(client.closeReason, 'invalid_payload');
  assert.equal(srv.requests.length, 1);
});

test('connect retries while the server is unreachable, then succeeds', async (t) => {
  let n = 0;
  const srv = await fakeServer(({ path }) => {
    if (path === '/connect') return ++n < 3 ? err(503, 'unavailable') : connected('s1');
    if (path === '/data') return 'hang';
    return { status: 204 };
  });
  t.after(() => srv.close());
  const client = mk(t, { baseUrl: srv.url, deviceId: 'dev-1', backoff: { initialMs: 10, maxMs: 20 } });
  const seen = collect(client);
  const session = await client.connect();
  assert.equal(session.sessionId, 's1');
  assert.deepEqual(seen.statuses.map((s) => s.state), ['connecting', 'reconnecting', 'reconnecting', 'connected']);
  await client.disconnect();
});

test('a poll with no answer past its hold times out and is retried', async (t) => {
  let poll = 0;
  const srv = await fakeServer(({ path }) => {
    if (path === '/connect') return connected('s1', { pollTimeout: 0 });
    if (path === '/data') return ++poll === 1 ? 'hang' : poll === 2 ? { status: 200, body: { cursor: 1, messages: [msg(1)] } } : 'hang';
    return { status: 204 };
  });
  t.after(() => srv.close());
  const client = mk(t, { baseUrl: srv.url, deviceId: 'dev-1', requestTimeoutMs: 150, backoff: { initialMs: 10 } });
  const seen = collect(client);
  await client.connect();
  await waitFor(() => seen.messages.length === 1, { what: 'message after the timeout' });
  assert.equal(seen.errors[0].error.code, 'timeout');
  await client.disconnect();
});

test('disconnect aborts the parked poll and deletes the session', async (t) => {
  const srv = await fakeServer(({ path }) => {
    if (path === '/connect') return connected('s1');
    if (path === '/data') return 'hang';
    return { status: 204 };
  });
  t.after(() => srv.close());
  const client = mk(t, { baseUrl: srv.url, deviceId: 'dev-1' });
  const seen = collect(client);
  await client.connect();
  await waitFor(() => srv.polls().length === 1, { what: 'the parked poll' });
  await client.disconnect();
  assert.equal(client.state, 'closed');
  assert.equal(client.sessionId, null);
  assert.deepEqual(srv.requests.map((r) => `${r.method} ${r.path}`), ['POST /connect', 'GET /data', 'DELETE /session']);
  assert.equal(seen.errors.length, 0, 'the aborted poll is not reported as an error');
  await assert.rejects(client.send({ to: { userId: 'x' }, data: 1 }), (e) => e.code === 'not_connected');
});

test('disconnect acknowledges what it received (DELETE /session with cursor)', async (t) => {
  let polls = 0;
  const srv = await fakeServer(({ path }) => {
    if (path === '/connect') return connected('s1');
    if (path === '/data') return ++polls === 1 ? { status: 200, body: { cursor: 3, messages: [msg(2), msg(3)] } } : 'hang';
    return { status: 204 };
  });
  t.after(() => srv.close());
  const client = mk(t, { baseUrl: srv.url, deviceId: 'dev-1' });
  const seen = collect(client);
  await client.connect();
  await waitFor(() => seen.messages.length === 2 && srv.polls().length === 2, { what: 'two messages and a parked poll' });
  await client.disconnect();
  const del = srv.requests.find((r) => r.method === 'DELETE');
  assert.equal(del.query.sessionId, 's1');
  assert.equal(del.query.cursor, '3');
});

test('token is sent as a bearer on every connect (string or function)', async (t) => {
  const auths = [];
  let sessions = 0;
  const srv = await fakeServer(({ path, req, query }) => {
    if (path === '/connect') {
      auths.push(req.headers.authorization);
      return connected(`s${++sessions}`);
    }
    if (path === '/data') return query.sessionId === 's1' ? err(404, 'session_not_found') : 'hang';
    return { status: 204 };
  });
  t.after(() => srv.close());
  let n = 0;
  const client = mk(t, { baseUrl: srv.url, deviceId: 'dev-1', token: async () => `jwt-${++n}` });
  await client.connect();
  await waitFor(() => sessions === 2, { what: 'a reconnect after 404' });
  assert.deepEqual(auths, ['Bearer jwt-1', 'Bearer jwt-2']);
  const fixed = mk(t, { baseUrl: srv.url, deviceId: 'dev-2', token: 'static' });
  await fixed.connect();
  assert.equal(auths[2], 'Bearer static');
  await waitFor(() => srv.polls().some((p) => p.query.sessionId === 's3'), { what: 'the poll of the third session' });
  assert.ok(srv.requests.filter((r) => r.path === '/data').every((r) => !r.req.headers.authorization), 'polls carry no token');
});

test('send posts to /send with the session id; after a 404 it reconnects and retries once', async (t) => {
  let sessions = 0;
  const srv = await fakeServer(({ path, query }) => {
    if (path === '/connect') return connected(`s${++sessions}`);
    if (path === '/data') return query.sessionId === 's1' && query.timeout === '0' ? err(404, 'session_not_found') : 'hang';
    if (path === '/send') return query.sessionId === 's1' ? err(404, 'session_not_found') : { status: 202, body: { id: 'm_x', delivered: 1, stored: 0 } };
    return { status: 204 };
  });
  t.after(() => srv.close());
  const client = mk(t, { baseUrl: srv.url, deviceId: 'dev-1' });
  await client.connect();
  await waitFor(() => srv.polls().length === 1, { what: 'the parked poll' });
  const res = await client.send({ to: { userId: 'bob' }, topic: 'chat', data: { text: 'hi' } });
  assert.deepEqual(res, { id: 'm_x', delivered: 1, stored: 0 });
  const sends = srv.requests.filter((r) => r.path === '/send');
  assert.deepEqual(sends.map((s) => s.query.sessionId), ['s1', 's2']);
  assert.deepEqual(sends[1].body, { to: { userId: 'bob' }, topic: 'chat', data: { text: 'hi' } });
  assert.equal(client.sessionId, 's2');
  await client.disconnect();
});
