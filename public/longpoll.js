/**
 * longpoll.js: a client for the longpoll server (HTTP long polling).
 *
 * One ES module, no dependencies, no build step. It runs in browsers and in
 * Node.js 20 or newer (anything with fetch, AbortController, EventTarget and
 * CustomEvent). The server serves it at /longpoll.js.
 *
 *   import { LongPollClient } from '/longpoll.js';
 *
 *   const client = new LongPollClient({
 *     deviceId: 'phone-1',              // required, [A-Za-z0-9._:@-]{1,128}
 *     userId: 'alice',                  // optional
 *     topics: ['news', '$presence'],    // optional
 *     meta: { app: '1.0' },             // optional, returned on the session
 *   });
 *   client.on('message', (msg) => console.log(msg.seq, msg.topic, msg.from, msg.data));
 *   client.on('status', ({ state, retryInMs, reason }) => console.log(state));
 *   client.on('error', ({ error, willRetry }) => console.warn(error.code, error.message));
 *   await client.connect();             // resolves with the session (POST /connect, 201)
 *   await client.send({ to: { userId: 'bob' }, topic: 'chat', data: { text: 'hi' } });
 *   await client.disconnect();          // DELETE /session
 *
 * Options: baseUrl ('' = same origin), deviceId, userId, topics, meta,
 * pollTimeout (seconds the server may hold a poll; default: the server's),
 * backoff ({ initialMs: 500, maxMs: 30000, factor: 2, jitter: 0.5 }),
 * requestTimeoutMs (connect/send/disconnect, default 15000), dedupeWindow
 * (how many message ids to remember, default 1000), fetch (an implementation
 * to use instead of globalThis.fetch), token (for a server started with
 * --connect-secret: the JWT sent as "Authorization: Bearer" on every
 * connect; a string, or a function returning one or a promise of one, called
 * before each connect so a fresh token can be fetched).
 *
 * State (client.state) is one of:
 *   'idle'          not started yet
 *   'connecting'    POST /connect in flight
 *   'connected'     the session is live; a long poll is open, waiting for messages
 *   'reconnecting'  a request failed; the next try is in retryInMs (client.retryAt)
 *   'closed'        stopped for good; client.closeReason says why:
 *                   'disconnected' (you called disconnect()), 'session_closed'
 *                   (410: the session was ended, e.g. the same deviceId
 *                   connected elsewhere), 'superseded' (409: another poll took
 *                   over this session), or the code of a request the server
 *                   refused (e.g. 'invalid_payload').
 *
 * Events (an EventTarget; client.on(type, fn) passes event.detail to fn and
 * returns a function that removes the listener):
 *   'message'  detail: the message {seq, id, topic, from, data, sentAt},
 *              once per message, in order, never twice.
 *   'status'   detail: {state, previous, sessionId, reason, error, retryInMs, retryAt, attempt}
 *   'session'  detail: {session, resumed}: a session was created; resumed is
 *              true when it replaces one the server lost (404).
 *   'error'    detail: {error, willRetry, retryInMs}: error is a LongPollError
 *              with code (API error code, 'network_error' or 'timeout'),
 *              status (HTTP status, 0 for network errors) and message.
 *
 * Behaviour on failure:
 *   - network errors, timeouts, 5xx (503 while the server drains) and 429
 *     back off exponentially with jitter (about 0.5 s, doubling, at most
 *     30 s) and retry; the first poll after a failure uses timeout=0 so the
 *     state turns 'connected' as soon as the server answers again.
 *     retryNow() (or the browser's 'online' event) cuts the wait short.
 *   - 404 session_not_found (expired, or the server restarted) and 400
 *     invalid_cursor: connect again with the same device payload (a new
 *     session; the server hands over messages stored for the device or user)
 *     and carry on polling.
 *   - 410 session_closed and 409 superseded: stop; state 'closed' with that reason.
 *   - 204 (the poll timed out empty): poll again at once.
 *   - Other 4xx: stop; state 'closed' with the error code as reason.
 *
 * Delivery: each poll sends cursor = the highest seq already handed to your
 * 'message' listeners, which acknowledges them; a message is only dropped
 * from the server once acknowledged, so nothing the server delivered is lost.
 * Messages with seq <= cursor, and message ids already seen (the last
 * dedupeWindow ids, across sessions), are skipped, so nothing is handed over
 * twice after a retry or a reconnect.
 *
 * send(): POST /send?sessionId=...; the server sets `from`. If the session is
 * gone (404) it waits for the client to reconnect and tries once more.
 */

/** Default backoff: first retry after about 0.5 s, doubling, never over 30 s. */
export const DEFAULT_BACKOFF = Object.freeze({ initialMs: 500, maxMs: 30000, factor: 2, jitter: 0.5 });

/**
 * backoffDelay returns the wait in ms before retry number `attempt` (0-based):
 * min(maxMs, initialMs * factor^attempt), less a random share of up to
 * `jitter` of it, so the result lies in [base * (1 - jitter), base].
 */
export function backoffDelay(attempt, backoff = DEFAULT_BACKOFF, random = Math.random) {
  const b = { ...DEFAULT_BACKOFF, ...backoff };
  const base = Math.min(b.maxMs, b.initialMs * Math.pow(b.factor, Math.max(0, attempt)));
  const jitter = Math.min(1, Math.max(0, b.jitter));
  return Math.max(0, Math.round(base * (1 - jitter * random())));
}

/** LongPollError is what the client throws and reports: an API error code, HTTP status and message. */
export class LongPollError extends Error {
  constructor(code, message, status = 0, body = undefined) {
    super(message || code);
    this.name = 'LongPollError';
    /** API error code (`session_not_found`, ...), or `network_error`, `timeout`, `not_connected`, `closed`. */
    this.code = code;
    /** HTTP status; 0 when no response arrived. */
    this.status = status;
    /** Parsed response body, if any. */
    this.body = body;
  }
}

const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const RECONNECT_CODES = new Set(['session_not_found', 'invalid_cursor']);
const STOP_CODES = new Set(['session_closed', 'superseded']);

const isRetryable = (err) => err.status === 0 || RETRYABLE_STATUS.has(err.status) || err.status >= 500;

/** LongPollClient keeps one device connected to a longpoll server. See the top of this file. */
export class LongPollClient extends EventTarget {
  constructor(options = {}) {
    super();
    const { deviceId, userId, topics, meta } = options;
    if (typeof deviceId !== 'string' || deviceId === '') {
      throw new TypeError('LongPollClient: options.deviceId is required');
    }
    /** Base URL of the server without a trailing slash; '' means same origin. */
    this.baseUrl = String(options.baseUrl ?? '').replace(/\/+$/, '');
    /** The device payload sent to POST /connect (and again on every reconnect). */
    this.device = { deviceId };
    if (userId) this.device.userId = userId;
    if (topics && topics.length) this.device.topics = [...topics];
    if (meta !== undefined) this.device.meta = meta;
    this.pollTimeout = options.pollTimeout;
    this.backoff = { ...DEFAULT_BACKOFF, ...(options.backoff || {}) };
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15000;
    this.token = options.token;
    this.dedupeWindow = options.dedupeWindow ?? 1000;
    this._fetch = options.fetch || ((...args) => globalThis.fetch(...args));
    this._random = options.random || Math.random;

    /** One of 'idle', 'connecting', 'connected', 'reconnecting', 'closed'. */
    this.state = 'idle';
    /** The current session as POST /connect returned it, or null. */
    this.session = null;
    /** Highest seq handed to 'message' listeners in the current session (sent as `cursor`). */
    this.cursor = 0;
    /** Why the client stopped (state 'closed'), else null. */
    this.closeReason = null;
    /** The error that stopped the client, if any. */
    this.closeError = null;
    /** When the next retry happens (ms since epoch) while 'reconnecting', else null. */
    this.retryAt = null;
    /** Counters: messages handed over, duplicates skipped, sessions created, failed requests. */
    this.stats = { received: 0, duplicates: 0, sessions: 0, failures: 0 };

    this._gen = 0; // bumps on connect() and on stop; an old loop sees the change and ends
    this._inflight = null; // AbortController of the request in flight
    this._wake = null; // resolves the backoff sleep early
    this._ready = null; // deferred settled when the first session exists
    this._seen = new Set(); // recent message ids, oldest first
    this._probe = false; // next poll uses timeout=0
    this._onOnline = () => this.retryNow();
  }

  /** The current session id, or null. */
  get sessionId() {
    return this.session ? this.session.sessionId : null;
  }

  /** on adds a listener that receives event.detail; it returns a function that removes it. */
  on(type, fn) {
    const h = (e) => fn(e.detail, e);
    this.addEventListener(type, h);
    return () => this.removeEventListener(type, h);
  }

  /**
   * connect creates a session and starts the poll loop. It resolves with the
   * session once the server accepted it (retrying network errors and 5xx in
   * the meantime) and rejects if the server refuses the device payload or
   * disconnect() is called first. Calling it while running returns the same promise.
   */
  connect() {
    if (this._ready && this.state !== 'closed') return this._ready.promise;
    this._ready = deferred();
    this._ready.promise.catch(() => {}); // callers that ignore the promise should not see an unhandled rejection
    this.closeReason = null;
    this.closeError = null;
    this.session = null;
    this.cursor = 0;
    const gen = ++this._gen;
    if (typeof globalThis.addEventListener === 'function') globalThis.addEventListener('online', this._onOnline);
    this._loop(gen);
    return this._ready.promise;
  }

  /** retryNow skips the rest of the current backoff wait. */
  retryNow() {
    if (this._wake) this._wake();
  }

  /**
   * disconnect stops the loop, ends the session on the server (DELETE
   * /session, sent with keepalive so it also works from 'pagehide') and sets
   * state 'closed' with reason 'disconnected'.
   */
  async disconnect() {
    const sid = this.sessionId;
    const cursor = this.cursor;
    this._stop('disconnected', null);
    if (!sid) return;
    // cursor (a longpoll extension) acknowledges what was handed to us, so
    // the server does not keep it for the device's next session.
    const ack = cursor > 0 ? `&cursor=${cursor}` : '';
    try {
      await this._request('DELETE', `/session?sessionId=${encodeURIComponent(sid)}${ack}`, undefined, { keepalive: true });
    } catch (err) {
      // 404: already gone. Anything else: the server will expire the session.
    }
  }

  /**
   * send posts a message to other clients: {to: {userId|deviceId|topic}, topic?, data, ttl?, id?}.
   * It resolves with the server's 202 body ({id, delivered, stored}) and
   * throws a LongPollError otherwise.
   */
  async send(message) {
    const sid = this.sessionId;
    if (!sid) throw new LongPollError('not_connected', 'not connected: call connect() first');
    try {
      return await this._request('POST', `/send?sessionId=${encodeURIComponent(sid)}`, message);
    } catch (err) {
      if (!(err instanceof LongPollError) || err.code !== 'session_not_found' || this.state === 'closed') throw err;
      // The server lost the session (restart or expiry): reconnect, then try once more.
      if (this.session && this.session.sessionId === sid && this.state === 'connected') this._abortInflight();
      this.retryNow();
      const session = await this._nextSession(sid, this.requestTimeoutMs);
      return await this._request('POST', `/send?sessionId=${encodeURIComponent(session.sessionId)}`, message);
    }
  }

  // ---- internals ----

  async _loop(gen) {
    let attempt = 0;
    while (gen === this._gen) {
      try {
        if (!this.session) {
          this._setState(this.state === 'reconnecting' ? 'reconnecting' : 'connecting');
          const token = typeof this.token === 'function' ? await this.token() : this.token;
          const session = await this._request('POST', '/connect', this.device, { token });
          if (gen !== this._gen) {
            // Stopped while connecting: do not leave the new session behind.
            this._request('DELETE', `/session?sessionId=${encodeURIComponent(session.sessionId)}`, undefined, { keepalive: true }).catch(() => {});
            return;
          }
          this._adopt(session);
          attempt = 0;
          this._setState('connected');
          continue;
        }
        const probe = this._probe;
        const res = await this._poll(probe);
        if (gen !== this._gen) return;
        this._probe = false;
        attempt = 0;
        if (this.state !== 'connected') this._setState('connected');
        if (res) this._deliver(res);
      } catch (err) {
        if (gen !== this._gen) return;
        const error = toError(err);
        this.stats.failures++;
        if (this.session && RECONNECT_CODES.has(error.code)) {
          // The server does not know this session (any more): start a new one, same device.
          this._emit('error', { error, willRetry: true, retryInMs: 0 });
          this.session = null;
          this.cursor = 0;
          this._setState('reconnecting', { retryInMs: 0, attempt });
          continue;
        }
        if (error.code === 'aborted') {
          // send() found the session gone and cut this poll short: check at once.
          this._probe = true;
          continue;
        }
        if (STOP_CODES.has(error.code)) {
          this._emit('error', { error, willRetry: false });
          this._stop(error.code, error);
          return;
        }
        if (!isRetryable(error)) {
          this._emit('error', { error, willRetry: false });
          this._stop(error.code, error);
          return;
        }
        const delay = backoffDelay(attempt, this.backoff, this._random);
        attempt++;
        this._probe = true;
        this.retryAt = Date.now() + delay;
        this._emit('error', { error, willRetry: true, retryInMs: delay });
        this._setState('reconnecting', { retryInMs: delay, retryAt: this.retryAt, attempt, error }, true);
        await this._sleep(delay);
        this.retryAt = null;
      }
    }
  }

  /** _poll sends one GET /data and returns the 200 body, or null for 204. */
  async _poll(probe) {
    const s = this.session;
    let url = `/data?sessionId=${encodeURIComponent(s.sessionId)}&cursor=${this.cursor}`;
    let holdSec = Number(this.pollTimeout ?? s.pollTimeout ?? 30);
    if (probe) {
      url += '&timeout=0';
      holdSec = 0;
    } else if (this.pollTimeout !== undefined) {
      url += `&timeout=${encodeURIComponent(this.pollTimeout)}`;
    }
    // The server answers by holdSec (capped by its maximum); past that plus a margin the connection is dead.
    const watchdogMs = Math.max(holdSec, 0) * 1000 + this.requestTimeoutMs;
    return this._request('GET', url, undefined, { timeoutMs: watchdogMs });
  }

  _adopt(session) {
    const resumed = this.stats.sessions > 0;
    this.session = session;
    this.cursor = Number(session.cursor) || 0;
    this._probe = false;
    this.stats.sessions++;
    this._ready.resolve(session);
    this._emit('session', { session, resumed });
  }

  _deliver(body) {
    const messages = body && Array.isArray(body.messages) ? body.messages : [];
    for (const m of messages) {
      const seq = Number(m && m.seq);
      if (!Number.isFinite(seq) || seq <= this.cursor) {
        this.stats.duplicates++;
        continue;
      }
      this.cursor = seq;
      if (m.id !== undefined && m.id !== null && m.id !== '') {
        if (this._seen.has(m.id)) {
          this.stats.duplicates++;
          continue;
        }
        this._seen.add(m.id);
        if (this._seen.size > this.dedupeWindow) this._seen.delete(this._seen.values().next().value);
      }
      this.stats.received++;
      this._emit('message', m);
    }
  }

  _stop(reason, error) {
    this._gen++;
    this._abortInflight();
    if (this._wake) this._wake();
    if (typeof globalThis.removeEventListener === 'function') globalThis.removeEventListener('online', this._onOnline);
    this.closeReason = reason;
    this.closeError = error;
    this.retryAt = null;
    const sid = this.sessionId;
    this.session = null;
    if (this._ready) {
      this._ready.reject(error || new LongPollError('closed', `client closed: ${reason}`));
    }
    this._setState('closed', { reason, error, sessionId: sid });
  }

  _abortInflight() {
    if (this._inflight) this._inflight.abort();
  }

  _setState(state, extra = {}, force = false) {
    const previous = this.state;
    if (previous === state && !force) return;
    this.state = state;
    this._emit('status', { state, previous, sessionId: this.sessionId, reason: null, ...extra });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this._wake === done) this._wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this._wake = done;
    });
  }

  _nextSession(oldSid, timeoutMs) {
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        offSession();
        offStatus();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new LongPollError('timeout', 'timed out waiting for a new session'));
      }, timeoutMs);
      const offSession = this.on('session', ({ session }) => {
        if (session.sessionId !== oldSid) {
          cleanup();
          resolve(session);
        }
      });
      const offStatus = this.on('status', ({ state, reason }) => {
        if (state === 'closed') {
          cleanup();
          reject(new LongPollError('closed', `client closed: ${reason}`));
        }
      });
      if (this.session && this.session.sessionId !== oldSid) {
        cleanup();
        resolve(this.session);
      }
    });
  }

  /** _request does one HTTP exchange; it returns the JSON body (null for 204) or throws a LongPollError. */
  async _request(method, path, body, { timeoutMs = this.requestTimeoutMs, keepalive = false, token } = {}) {
    const ctl = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ctl.abort();
    }, timeoutMs);
    const tracked = !keepalive;
    if (tracked && method === 'GET') this._inflight = ctl;
    try {
      const init = { method, signal: ctl.signal, headers: { Accept: 'application/json' }, cache: 'no-store' };
      if (keepalive) init.keepalive = true;
      if (token) init.headers.Authorization = `Bearer ${token}`;
      if (body !== undefined) {
        init.headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
      }
      let res;
      let text;
      try {
        res = await this._fetch(this.baseUrl + path, init);
        text = res.status === 204 ? '' : await res.text();
      } catch (err) {
        if (timedOut) throw new LongPollError('timeout', `${method} ${path.split('?')[0]}: no answer within ${timeoutMs} ms`);
        if (err && err.name === 'AbortError') throw new LongPollError('aborted', 'request aborted');
        throw new LongPollError('network_error', `${method} ${path.split('?')[0]}: ${(err && err.message) || 'network error'}`);
      }
      let parsed = null;
      if (text) {
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
      }
      if (res.ok) {
        if (parsed === undefined) throw new LongPollError('invalid_response', `${method} ${path.split('?')[0]}: response is not JSON`, res.status);
        return parsed;
      }
      const e = parsed && parsed.error ? parsed.error : {};
      throw new LongPollError(e.code || `http_${res.status}`, e.message || `${method} ${path.split('?')[0]}: HTTP ${res.status}`, res.status, parsed);
    } finally {
      clearTimeout(timer);
      if (this._inflight === ctl) this._inflight = null;
    }
  }
}

function toError(err) {
  if (err instanceof LongPollError) return err;
  return new LongPollError('client_error', (err && err.message) || String(err));
}

function deferred() {
  let resolve;
  let reject;
  let settled = false;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return {
    promise,
    resolve: (v) => {
      if (!settled) {
        settled = true;
        resolve(v);
      }
    },
    reject: (e) => {
      if (!settled) {
        settled = true;
        reject(e);
      }
    },
  };
}
