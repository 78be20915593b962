// The console page (GET /) in headless Chromium against the real server
// binary: connect and receive a push, two pages messaging each other, server
// restart recovery, a 404 after session expiry, and no duplicates.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { LongpollServer, freePort, launchBrowser, waitFor, artifactPath } from './helpers.mjs';

const WAIT = 20000; // bound for any single UI condition

let browser;
const servers = [];

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await Promise.allSettled(servers.map((s) => s.stop()));
  if (browser) await browser.close();
});

async function startServer(args = []) {
  const server = new LongpollServer({ port: await freePort(), args });
  servers.push(server);
  await server.start();
  return server;
}

/** openPage opens the console in a fresh browser context and records page errors. */
async function openPage(t, server, { width = 1280, height = 900 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  t.after(() => context.close());
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(err));
  page.setDefaultTimeout(WAIT);
  const res = await page.goto(`${server.url}/`);
  assert.equal(res.status(), 200);
  return page;
}

/** connectAs fills the connect form like a person and waits for "Connected". */
async function connectAs(page, { deviceId, userId = '', topics = '', presence = true, keyboard = false }) {
  await page.getByLabel('Device id').fill(deviceId);
  await page.getByLabel('User id').fill(userId);
  await page.getByLabel('Topics').fill(topics);
  await page.getByLabel('Show who is online').setChecked(presence);
  if (keyboard) {
    await page.getByLabel('Topics').press('Enter');
  } else {
    await page.getByRole('button', { name: 'Connect', exact: true }).click();
  }
  await waitState(page, 'connected');
  return sessionIdOf(page);
}

async function waitState(page, state, timeout = WAIT) {
  await page.locator(`#status[data-state="${state}"]`).waitFor({ timeout });
}

async function sessionIdOf(page) {
  const sid = (await page.locator('#session-id').textContent()).trim();
  assert.match(sid, /^[A-Za-z0-9_-]{16,}$/, `session id shown: ${sid}`);
  return sid;
}

/** messages returns the rendered messages (all, hidden or not), oldest first. */
async function messages(page) {
  const items = await page.$$eval('#messages li.msg', (lis) => lis.map((li) => ({
    seq: Number(li.dataset.seq),
    id: li.dataset.id,
    topic: li.dataset.topic,
    from: li.dataset.from,
    hidden: li.hidden,
    data: JSON.parse(li.querySelector('pre.data').textContent),
    text: li.innerText,
  })));
  return items.reverse();
}

async function waitMessage(page, pred, what, timeout = WAIT) {
  return waitFor(async () => (await messages(page)).find(pred), { timeoutMs: timeout, intervalMs: 50, what });
}

async function sendFromPage(page, { kind, to, topic = '', data }) {
  await page.getByLabel('Send to').selectOption(kind);
  await page.getByLabel('Recipient').fill(to);
  await page.getByLabel('Topic label').fill(topic);
  await page.getByLabel('Data').fill(JSON.stringify(data));
  await page.getByRole('button', { name: 'Send', exact: true }).click();
  await page.locator('#send-result[data-kind]').waitFor();
  const text = await page.locator('#send-result').textContent();
  assert.match(text, /^Sent /, text);
  return text;
}

function assertNoDuplicates(list) {
  const ids = list.map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length, `duplicate message ids: ${ids.join(',')}`);
}

test('connect with the form (keyboard), receive pushed messages, heartbeat ticks', async (t) => {
  const server = await startServer(['--heartbeat-interval', '1s']);
  const page = await openPage(t, server);
  assert.equal(await page.title(), 'longpoll console');
  await waitState(page, 'idle');
  // Every control has a label (or is a button with text).
  const unlabeled = await page.$$eval('input, select, textarea, button', (els) => els
    .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !(e.tagName === 'BUTTON' && e.textContent.trim()))
    .map((e) => e.id || e.outerHTML));
  assert.deepEqual(unlabeled, []);
  const sid = await connectAs(page, { deviceId: 'kitchen-tablet', userId: 'alice', topics: 'news, home/kitchen', keyboard: true });
  assert.match(await page.locator('#status').innerText(), /Connected/);

  const push = await server.push({ to: { deviceId: 'kitchen-tablet' }, topic: 'alerts', data: { text: 'door open', level: 2 } });
  assert.equal(push.status, 202, JSON.stringify(push.body));
  const m = await waitMessage(page, (x) => x.topic === 'alerts', 'the pushed message');
  assert.deepEqual(m.data, { text: 'door open', level: 2 });
  assert.ok(m.seq >= 1);
  assert.match(m.text, /"text": "door open"/, 'data is pretty-printed JSON');
  assert.match(m.text, new RegExp(`#${m.seq}`));

  await server.push({ to: { topic: 'news' }, data: 'headline' });
  await waitMessage(page, (x) => x.topic === 'news' && x.data === 'headline', 'the topic message');
  await server.push({ to: { userId: 'alice' }, topic: 'mail', data: { unread: 3 } });
  await waitMessage(page, (x) => x.topic === 'mail', 'the user message');

  // The heartbeat (every 1 s here) ticks in the session panel and stays out of the list unless asked for.
  await page.waitForFunction(() => Number(document.getElementById('heartbeat').dataset.count) >= 2, null, { timeout: WAIT });
  assert.match(await page.locator('#heartbeat-text').textContent(), /received, last at/);
  const beats = (await messages(page)).filter((x) => x.topic === '$heartbeat');
  assert.ok(beats.length >= 2 && beats.every((b) => b.hidden), 'heartbeats hidden by default');
  await page.getByLabel('Heartbeats').check();
  assert.ok((await messages(page)).filter((x) => x.topic === '$heartbeat').every((b) => !b.hidden));

  assert.equal(await sessionIdOf(page), sid);
  assertNoDuplicates(await messages(page));
  await page.getByRole('button', { name: 'Disconnect' }).click();
  await waitState(page, 'closed');
  assert.match(await page.locator('#status').innerText(), /You disconnected/);
  assert.deepEqual(page.errors, []);
});

test('two pages send to each other; presence shows the other one; phone width fits', async (t) => {
  const server = await startServer(['--heartbeat-interval', '2s']);
  const a = await openPage(t, server, { width: 1280, height: 1000 });
  const b = await openPage(t, server, { width: 390, height: 844 });
  await connectAs(a, { deviceId: 'laptop', userId: 'alice', topics: 'chat' });
  await connectAs(b, { deviceId: 'phone', userId: 'bob', topics: 'chat' });

  // A was online first, so it sees B come online through $presence.
  await a.locator('#online li[data-device="phone"]').waitFor();
  assert.match(await a.locator('#online').innerText(), /bob \/ phone/);
  assert.match(await b.locator('#online').innerText(), /bob \/ phone\s*you/);

  await sendFromPage(a, { kind: 'userId', to: 'bob', topic: 'chat', data: { text: 'hi bob' } });
  const got = await waitMessage(b, (x) => x.data && x.data.text === 'hi bob', 'alice -> bob');
  assert.equal(got.from, 'alice/laptop');
  assert.equal(got.topic, 'chat');

  // B answers through the "Message" button of the online list on A's side... and by device id from B.
  await sendFromPage(b, { kind: 'deviceId', to: 'laptop', data: { text: 'hi alice' } });
  const back = await waitMessage(a, (x) => x.data && x.data.text === 'hi alice', 'bob -> alice');
  assert.equal(back.from, 'bob/phone');

  // A topic message reaches every subscriber, the sender included.
  await a.locator('#online li[data-device="phone"] button').click();
  assert.equal(await a.getByLabel('Recipient').inputValue(), 'phone');
  await sendFromPage(a, { kind: 'topic', to: 'chat', topic: 'chat', data: { text: 'to the room', n: 1 } });
  await waitMessage(a, (x) => x.data && x.data.text === 'to the room', 'topic message on A');
  await waitMessage(b, (x) => x.data && x.data.text === 'to the room', 'topic message on B');
  await server.push({ to: { deviceId: 'laptop' }, topic: 'orders', data: { order: 1042, items: [{ sku: 'tea', qty: 2 }], paid: true } });
  await waitMessage(a, (x) => x.topic === 'orders', 'pushed order');
  await a.waitForFunction(() => Number(document.getElementById('heartbeat').dataset.count) >= 1, null, { timeout: WAIT });

  assertNoDuplicates(await messages(a));
  assertNoDuplicates(await messages(b));
  const overflow = await b.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `phone layout scrolls sideways by ${overflow}px`);

  await a.evaluate(() => window.scrollTo(0, 0));
  await a.screenshot({ path: artifactPath('console.png') });
  await b.screenshot({ path: artifactPath('console-phone.png'), fullPage: true });

  // B leaving shows up on A.
  await b.getByRole('button', { name: 'Disconnect' }).click();
  await a.locator('#online li[data-device="phone"]').waitFor({ state: 'detached' });
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});

test('server stop and restart: the page reconnects by itself, shows the next push, no duplicates', async (t) => {
  const server = await startServer(['--heartbeat-interval', '0']);
  const page = await openPage(t, server);
  const sid1 = await connectAs(page, { deviceId: 'restart-dev', userId: 'carol', presence: false });
  for (let n = 1; n <= 3; n++) {
    const r = await server.push({ to: { deviceId: 'restart-dev' }, topic: 'count', data: { n } });
    assert.equal(r.status, 202);
  }
  await waitFor(async () => (await messages(page)).filter((x) => x.topic === 'count').length === 3, { what: '3 messages' });

  const stopped = await server.stop();
  assert.equal(stopped.code, 0, `exit after SIGTERM: ${JSON.stringify(stopped)}`);
  await waitState(page, 'reconnecting');
  await page.waitForFunction(() => /Reconnecting in \d+ s/.test(document.getElementById('status').innerText), null, { timeout: WAIT });

  await server.start();
  // Pushed by device: delivered at once if the page is back, else stored until it connects.
  const r = await server.push({ to: { deviceId: 'restart-dev' }, topic: 'count', data: { n: 4 } });
  assert.equal(r.status, 202);
  assert.equal((r.body.delivered || 0) + (r.body.stored || 0), 1, JSON.stringify(r.body));
  await waitMessage(page, (x) => x.topic === 'count' && x.data.n === 4, 'the push after the restart', 45000);
  await waitState(page, 'connected');
  const sid2 = await sessionIdOf(page);
  assert.notEqual(sid2, sid1, 'a new session after the restart');
  assert.match(await page.locator('#messages').innerText(), /New session/);

  // One more, to be sure the poll loop runs on the new session.
  await server.push({ to: { userId: 'carol' }, topic: 'count', data: { n: 5 } });
  await waitMessage(page, (x) => x.topic === 'count' && x.data.n === 5, 'the 5th message');
  const list = (await messages(page)).filter((x) => x.topic === 'count');
  assert.deepEqual(list.map((x) => x.data.n), [1, 2, 3, 4, 5]);
  assertNoDuplicates(list);
  assert.deepEqual(page.errors, []);
});

test('a session that expired while the page could not poll gets 404, and the page reconnects', async (t) => {
  const server = await startServer(['--session-ttl', '2s', '--cleanup-interval', '1s', '--poll-timeout', '1s', '--heartbeat-interval', '0']);
  const page = await openPage(t, server);
  const sid1 = await connectAs(page, { deviceId: 'sleepy-dev', presence: false });
  await server.push({ to: { deviceId: 'sleepy-dev' }, topic: 'before', data: { n: 1 } });
  await waitMessage(page, (x) => x.topic === 'before', 'the first message');

  const seen404 = [];
  page.on('response', (res) => {
    if (new URL(res.url()).pathname === '/data' && res.status() === 404) seen404.push(res.url());
  });
  // Cut the page's polls off (as a lost network would) until the server expires the session.
  const cut = (url) => url.pathname === '/data';
  await page.route(cut, (route) => route.abort('internetdisconnected'));
  await waitState(page, 'reconnecting');
  await waitFor(async () => {
    const res = await fetch(`${server.url}/presence?deviceId=sleepy-dev`);
    if (res.status !== 200) throw new Error(`GET /presence: ${res.status}`);
    return (await res.json()).sessions.length === 0;
  }, { timeoutMs: 15000, intervalMs: 100, what: 'the server to expire the session' });
  const stored = await server.push({ to: { deviceId: 'sleepy-dev' }, topic: 'after', data: { n: 2 } });
  assert.equal(stored.status, 202);
  assert.equal(stored.body.stored, 1, `stored offline: ${JSON.stringify(stored.body)}`);
  await page.unroute(cut);

  // The next retry (within the backoff) gets 404, connects again and picks up the stored message.
  await waitMessage(page, (x) => x.topic === 'after', 'the message stored while expired', 45000);
  await waitState(page, 'connected');
  assert.ok(seen404.length >= 1, 'the page saw a 404 from /data');
  const sid2 = await sessionIdOf(page);
  assert.notEqual(sid2, sid1);
  const list = await messages(page);
  assert.deepEqual(list.map((x) => x.topic), ['before', 'after']);
  assertNoDuplicates(list);
  assert.deepEqual(page.errors, []);
});

test('the same device id connecting in another page closes the first one (410) and it stays closed', async (t) => {
  const server = await startServer(['--heartbeat-interval', '0']);
  const a = await openPage(t, server);
  const b = await openPage(t, server);
  await connectAs(a, { deviceId: 'shared-dev', presence: false });
  const sidB = await connectAs(b, { deviceId: 'shared-dev', presence: false });
  await waitState(a, 'closed');
  assert.match(await a.locator('#status').innerText(), /connected somewhere else/);
  assert.ok(await a.getByRole('button', { name: 'Connect', exact: true }).isEnabled());

  // B keeps the device's session: no reconnect ping-pong between the two pages.
  const r = await server.push({ to: { deviceId: 'shared-dev' }, topic: 'x', data: { n: 1 } });
  assert.equal(r.body.delivered, 1);
  await waitMessage(b, (x) => x.topic === 'x', 'the message on the page that took over');
  assert.equal(await sessionIdOf(b), sidB);
  assert.equal(await b.locator('#status').getAttribute('data-state'), 'connected');
  assert.equal(await a.locator('#status').getAttribute('data-state'), 'closed');
  assert.deepEqual((await messages(a)).filter((x) => x.topic === 'x'), []);
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});
