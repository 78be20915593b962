package redisstore

import "github.com/redis/rueidis"

// The keys of one deployment all start with its prefix P, "{name}:" (the
// hash tag makes them one Redis Cluster slot, so that every operation is
// one script over keys of one node):
//
//	P s           HASH  session id -> session record (codec.Session: the
//	                    client's JSON, which no script reads)
//	P x:<sid>     HASH  what the scripts index a session by: d (device),
//	                    u (user), t (topics, newline-separated)
//	P i           ZSET  session id -> idle clock (ms): the last refresh, or
//	                    the deadline of its parked poll (which keeps it alive)
//	P d           HASH  device -> its online session id
//	P u:<user>    SET   the online session ids of a user; P uc HASH user -> count
//	P t:<topic>   SET   the online session ids subscribed to a topic or pattern
//	P b:<sid>     LIST  the mailbox: message ids, oldest first
//	P q:<sid>     HASH  the mailbox's state: a (acknowledged up to: the head's
//	                    seq is a+1), v (the newest seq an answer carried),
//	                    o (its parked poll's owner, "node:gen")
//	P m:<mid>     HASH  a message: b (codec.Envelope), x (expires, ms),
//	                    y ("1": a system message), z (size), o (acceptance
//	                    order), r (how many mailboxes and offline lists hold it)
//	P o:<list>    ZSET  an offline list ("d:<device>", "u:<user>"): mid -> order
//	P ox          ZSET  "<list>\n<mid>" -> expires (ms), for cleanup
//	P n           ZSET  "d:<device>", "u:<user>" -> when last online (ms)
//	P k, P kr     ZSET  idempotency key -> expires (ms); HASH key -> codec.ID
//	P c           HASH  counters: backlog, offline, bytes (messages), names (bytes)
//	P ord         the acceptance order counter
//	P leader      the jobs' lease (Elector)
//	P n:<node>    the sharded pub/sub channel of one node
//
// A parked poll lives in the process that holds its connection; Redis
// knows only its owner (q:<sid> o). A script that appends to a mailbox
// with a parked poll of another node publishes the messages it takes for
// it to that node ("m" entries, or "w" entries, word to read the mailbox,
// for a large take), one that supersedes or ends it "s <sid> <owner>" or
// "c <sid> <owner> <code>"; for a poll of the calling node it returns
// the owner and the messages instead. Messages leave a mailbox only
// by acknowledgment (a cursor), never by being handed out, so a lost
// notification or answer costs a redelivery, never a message.

// lib is the preamble of every script: ARGV[1] is the prefix, ARGV[2] the
// calling node.
const lib = `
local P = ARGV[1]
local ME = ARGV[2]
local HC = 32
local MAXB = 100
local MAXBYTES = 1048576
local C = P..'c'

local function hold(mid, body, x, y, z)
  local k = P..'m:'..mid
  if redis.call('HINCRBY', k, 'r', 1) == 1 then
    redis.call('HSET', k, 'b', body, 'x', x, 'y', y, 'z', z, 'o', redis.call('INCR', P..'ord'))
    redis.call('HINCRBY', C, 'bytes', HC + tonumber(z))
  else
    redis.call('HINCRBY', C, 'bytes', HC)
  end
end

local function drop(mid)
  local k = P..'m:'..mid
  if redis.call('HINCRBY', k, 'r', -1) <= 0 then
    local z = tonumber(redis.call('HGET', k, 'z') or '0')
    redis.call('DEL', k)
    redis.call('HINCRBY', C, 'bytes', -(HC + z))
  else
    redis.call('HINCRBY', C, 'bytes', -HC)
  end
end

local function node(owner) return string.match(owner, '^([^:]+):') end

local function publish(n, msg) redis.call('SPUBLISH', P..'n:'..n, msg) end

-- take returns the pending messages of sid for a poll (nil: none): the
-- first one's seq, the newest seq an earlier answer carried, and the
-- records, at most MAXB and about MAXBYTES.
local function take(sid)
  local q = P..'q:'..sid
  local mids = redis.call('LRANGE', P..'b:'..sid, 0, MAXB - 1)
  if #mids == 0 then return nil end
  local a = tonumber(redis.call('HGET', q, 'a') or '0')
  local v = tonumber(redis.call('HGET', q, 'v') or '0')
  local out = {a + 1, v}
  local size = 0
  for i, mid in ipairs(mids) do
    local b = redis.call('HGET', P..'m:'..mid, 'b')
    size = size + #b
    if size > MAXBYTES and i > 1 then break end
    out[#out + 1] = b
  end
  local last = a + #out - 2
  if last > v then redis.call('HSET', q, 'v', last) end
  return out
end

-- push appends mid (held already, or held by hold after the check) to the
-- mailbox of sid: 1 when it is full (nothing changed).
local function push(sid, mid, max)
  local b = P..'b:'..sid
  if max > 0 and redis.call('LLEN', b) >= max then return 1 end
  redis.call('RPUSH', b, mid)
  redis.call('HINCRBY', C, 'backlog', 1)
  return 0
end

-- woken answers the parked poll of sid, if any, with the messages
-- pending: a poll of this node through locals ({owner, sid, take}), one
-- of another node through remote (node -> notification parts): the take
-- itself ("m"), or, when it is larger than INLINE bytes or the
-- notification to that node would pass NOTE bytes, word to read the
-- mailbox ("w"; the messages are then not handed out here, and the owner
-- stays). A lost "m" is recovered by the poll's own unpark (its hold's
-- end, or the sweep after a cut), which takes what is pending again.
local INLINE = 8192
local NOTE = 262144
local noted = {}
local function woken(sid, remote, locals)
  local q = P..'q:'..sid
  local o = redis.call('HGET', q, 'o')
  if not o then return end
  local t = take(sid)
  if not t then return end
  local n = node(o)
  if n == ME then
    redis.call('HDEL', q, 'o')
    locals[#locals + 1] = {o, sid, t}
    return
  end
  local r = remote[n] or {}
  remote[n] = r
  local size = 0
  for i = 3, #t do size = size + #t[i] end
  if size > INLINE or (noted[n] or 0) + size > NOTE then
    redis.call('HSET', q, 'v', t[2])
    r[#r + 1] = 'w\n'..sid..'\n'
    return
  end
  noted[n] = (noted[n] or 0) + size
  redis.call('HDEL', q, 'o')
  r[#r + 1] = 'm\n'..sid..'\n'..o..'\n'..t[1]..'\n'..t[2]..'\n'..(#t - 2)..'\n'
  for i = 3, #t do r[#r + 1] = #t[i]..'\n'..t[i] end
end

local function flush(remote)
  for n, parts in pairs(remote) do publish(n, table.concat(parts)) end
end

-- acked acknowledges up to ack: 'C' when ack is beyond the newest seq.
local function acked(sid, ack)
  local q = P..'q:'..sid
  local b = P..'b:'..sid
  local a = tonumber(redis.call('HGET', q, 'a') or '0')
  local n = redis.call('LLEN', b)
  if ack > a + n then return 'C' end
  if ack > a then
    local k = ack - a
    local mids = redis.call('LRANGE', b, 0, k - 1)
    redis.call('LTRIM', b, k, -1)
    for _, mid in ipairs(mids) do drop(mid) end
    redis.call('HINCRBY', C, 'backlog', -k)
    redis.call('HSET', q, 'a', ack)
  end
  return nil
end

local function stored()
  local c = redis.call('HMGET', C, 'bytes', 'names')
  return tonumber(c[1] or '0') + tonumber(c[2] or '0') + 384 * redis.call('ZCARD', P..'k')
end

local function offput(list, mid, x)
  redis.call('ZADD', P..'o:'..list, redis.call('HGET', P..'m:'..mid, 'o'), mid)
  redis.call('ZADD', P..'ox', x, list..'\n'..mid)
  redis.call('HINCRBY', C, 'offline', 1)
end

-- offtake removes the offline list and returns its (mid, order) pairs.
local function offtake(list)
  local z = P..'o:'..list
  local r = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
  if #r > 0 then
    redis.call('DEL', z)
    for i = 1, #r, 2 do redis.call('ZREM', P..'ox', list..'\n'..r[i]) end
    redis.call('HINCRBY', C, 'offline', -(#r / 2))
  end
  return r
end

local function recent(list, now, ttl)
  local t = redis.call('ZSCORE', P..'n', list)
  return t and now - tonumber(t) < ttl
end

local function online(list, now, max)
  local n = P..'n'
  if not redis.call('ZSCORE', n, list) then
    local cost = #list + 64
    if max >= 0 and stored() + cost > max then return end
    redis.call('HINCRBY', C, 'names', cost)
  end
  redis.call('ZADD', n, now, list)
end

-- unindex takes the session sid out of the directory and returns its
-- device and user.
local function unindex(sid)
  local x = redis.call('HMGET', P..'x:'..sid, 'd', 'u', 't')
  local dev, user = x[1] or '', x[2] or ''
  redis.call('HDEL', P..'s', sid)
  redis.call('ZREM', P..'i', sid)
  redis.call('DEL', P..'x:'..sid)
  if redis.call('HGET', P..'d', dev) == sid then redis.call('HDEL', P..'d', dev) end
  if user ~= '' then
    redis.call('SREM', P..'u:'..user, sid)
    if redis.call('HINCRBY', P..'uc', user, -1) <= 0 then redis.call('HDEL', P..'uc', user) end
  end
  for t in string.gmatch(x[3] or '', '[^\n]+') do redis.call('SREM', P..'t:'..t, sid) end
  return dev, user
end

-- closed ends the parked poll of sid, if any, with code ('c' closed, 'n'
-- not found), and returns its owner when it is this node's.
local function closed(sid, code)
  local o = redis.call('HGET', P..'q:'..sid, 'o')
  if not o then return '' end
  if node(o) == ME then return o end
  publish(node(o), 'c '..sid..' '..o..' '..code)
  return ''
end

-- finish ends the session sid: its parked poll is told code, and its
-- unacknowledged messages, but system and expired ones, move to its
-- device's offline list. It returns the local owner of the poll.
local function finish(sid, code, now, maxbytes)
  local dev, user = unindex(sid)
  online('d:'..dev, now, maxbytes)
  if user ~= '' then online('u:'..user, now, maxbytes) end
  local owner = closed(sid, code)
  local b = P..'b:'..sid
  local mids = redis.call('LRANGE', b, 0, -1)
  for _, mid in ipairs(mids) do
    local m = redis.call('HMGET', P..'m:'..mid, 'x', 'y')
    local x = tonumber(m[1])
    if m[2] == '1' or x <= now then drop(mid) else offput('d:'..dev, mid, x) end
  end
  if #mids > 0 then redis.call('HINCRBY', C, 'backlog', -#mids) end
  redis.call('DEL', b, P..'q:'..sid)
  return owner
end
`

// script is one operation: lib and its body.
func script(body string) *rueidis.Lua { return rueidis.NewLuaScript(lib + body) }

// Each script's ARGV starts with the prefix and the node (lib); its
// KEYS[1] is the sessions hash (P s), which routes it to the slot's node.
var (
	// connect: 3 record, 4 sid, 5 device, 6 user, 7 max sessions, 8 now,
	// 9 topics (newline-separated). → {"E", why} or {replaced record, local
	// owner of the replaced poll}.
	connectScript = script(`
local j, sid, dev, user = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local max, now, topics = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local old = redis.call('HGET', P..'d', dev)
if not old and max > 0 and redis.call('ZCARD', P..'i') >= max then return {'E', 'toomany'} end
local oldj, owner, carried = '', '', {}
if old then
  oldj = redis.call('HGET', P..'s', old) or ''
  unindex(old)
  owner = closed(old, 'c')
  carried = redis.call('LRANGE', P..'b:'..old, 0, -1)
  redis.call('DEL', P..'b:'..old, P..'q:'..old)
end
redis.call('HSET', P..'s', sid, j)
redis.call('ZADD', P..'i', now, sid)
redis.call('HSET', P..'d', dev, sid)
if user ~= '' then
  redis.call('SADD', P..'u:'..user, sid)
  redis.call('HINCRBY', P..'uc', user, 1)
end
redis.call('HSET', P..'x:'..sid, 'd', dev, 'u', user, 't', topics)
for t in string.gmatch(topics, '[^\n]+') do redis.call('SADD', P..'t:'..t, sid) end
redis.call('HSET', P..'q:'..sid, 'a', 0, 'v', 0)
local b = P..'b:'..sid
for _, mid in ipairs(carried) do redis.call('RPUSH', b, mid) end
local d = offtake('d:'..dev)
local u = {}
if user ~= '' then u = offtake('u:'..user) end
local i, k, moved = 1, 1, 0
while i <= #d or k <= #u do
  local mid
  if k > #u or (i <= #d and tonumber(d[i + 1]) <= tonumber(u[k + 1])) then
    mid = d[i]; i = i + 2
  else
    mid = u[k]; k = k + 2
  end
  if tonumber(redis.call('HGET', P..'m:'..mid, 'x')) > now then
    redis.call('RPUSH', b, mid)
    moved = moved + 1
  else
    drop(mid)
  end
end
redis.call('HINCRBY', C, 'backlog', moved)
return {oldj, owner}
`)

	// end: 3 sid, 4 ack (-1: none), 5 close code, 6 now, 7 max stored bytes.
	// → {"E", why} or {record, local owner}.
	endScript = script(`
local sid, ack, code, now, maxb = ARGV[3], tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local j = redis.call('HGET', P..'s', sid)
if not j then return {'E', 'notfound'} end
if ack >= 0 and acked(sid, ack) then return {'E', 'cursor'} end
return {j, finish(sid, code, now, maxb)}
`)

	// expire: 3 idle before (ms), 4 now, 5 max stored bytes, 6 at most.
	// → {record, local owner, …} of the sessions it ended.
	expireScript = script(`
local before, now, maxb = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ids = redis.call('ZRANGEBYSCORE', P..'i', '-inf', before, 'LIMIT', 0, tonumber(ARGV[6]))
local out = {}
for _, sid in ipairs(ids) do
  local j = redis.call('HGET', P..'s', sid)
  if j then
    out[#out + 1] = j
    out[#out + 1] = finish(sid, 'n', now, maxb)
  else
    redis.call('ZREM', P..'i', sid)
  end
end
return out
`)

	// touch: 3 sid, 4 now. → the record, or nil. The idle clock only moves
	// forward (a parked poll's deadline stays).
	touchScript = script(`
local j = redis.call('HGET', P..'s', ARGV[3])
if j then redis.call('ZADD', P..'i', 'XX', 'GT', ARGV[4], ARGV[3]) end
return j
`)

	// resubscribe: 3 sid, 4 record before, 5 record after, 6 its topics
	// (newline-separated), 7 count removed, then removed topics, then
	// added. → 1, or 0 when the record changed meanwhile (the caller reads
	// again), or -1 when the session is gone.
	resubscribeScript = script(`
local sid = ARGV[3]
local j = redis.call('HGET', P..'s', sid)
if not j then return -1 end
if j ~= ARGV[4] then return 0 end
redis.call('HSET', P..'s', sid, ARGV[5])
redis.call('HSET', P..'x:'..sid, 't', ARGV[6])
local nr = tonumber(ARGV[7])
for i = 8, 7 + nr do redis.call('SREM', P..'t:'..ARGV[i], sid) end
for i = 8 + nr, #ARGV do redis.call('SADD', P..'t:'..ARGV[i], sid) end
return 1
`)

	// append: 3 sid, 4 max, 5 mid, 6 record, 7 expires, 8 system, 9 size.
	// → {"E", why} or {stored bytes, local owner, sid, take}.
	appendScript = script(`
local sid, max = ARGV[3], tonumber(ARGV[4])
if redis.call('HEXISTS', P..'s', sid) == 0 then return {'E', 'notfound'} end
if max > 0 and redis.call('LLEN', P..'b:'..sid) >= max then return {'E', 'full'} end
hold(ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
push(sid, ARGV[5], 0)
local remote, locals = {}, {}
woken(sid, remote, locals)
flush(remote)
local out = {stored()}
for _, l in ipairs(locals) do out[#out + 1] = l end
return out
`)

	// fanout: 3 max, 4 mid, 5 record, 6 expires, 7 system, 8 size, then
	// the session ids. → {delivered, rejected, stored bytes, {owner, sid,
	// take}…}.
	fanoutScript = script(`
local max = tonumber(ARGV[3])
local delivered, rejected = 0, 0
local remote, locals = {}, {}
for i = 9, #ARGV do
  local sid = ARGV[i]
  if redis.call('HEXISTS', P..'s', sid) == 1 then
    if max > 0 and redis.call('LLEN', P..'b:'..sid) >= max then
      rejected = rejected + 1
    else
      hold(ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
      push(sid, ARGV[4], 0)
      delivered = delivered + 1
      woken(sid, remote, locals)
    end
  end
end
flush(remote)
local out = {delivered, rejected, stored()}
for _, l in ipairs(locals) do out[#out + 1] = l end
return out
`)

	// deliver: to a device (3 "d") or a user (3 "u"), 4 the name, 5 mailbox
	// max, 6 offline limit, 7 client (1/0), 8 now, 9 offline ttl, 10 mid,
	// 11 record, 12 expires, 13 system, 14 size.
	// → {"E", why} or {delivered, rejected, stored (0/1), stored bytes,
	// {owner, sid, take}…}.
	deliverScript = script(`
local kind, name, max, limit = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local client, now, ttl = ARGV[7] == '1', tonumber(ARGV[8]), tonumber(ARGV[9])
local mid, rec, x, y, z = ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]
local sids
if kind == 'd' then
  local sid = redis.call('HGET', P..'d', name)
  sids = sid and {sid} or {}
else
  sids = redis.call('SMEMBERS', P..'u:'..name)
end
local remote, locals = {}, {}
local delivered, rejected = 0, 0
for _, sid in ipairs(sids) do
  if max > 0 and redis.call('LLEN', P..'b:'..sid) >= max then
    if kind == 'd' then return {'E', 'full'} end
    rejected = rejected + 1
  else
    hold(mid, rec, x, y, z)
    push(sid, mid, 0)
    delivered = delivered + 1
    woken(sid, remote, locals)
  end
end
flush(remote)
local st = 0
local list = kind..':'..name
if #sids == 0 and (not client or recent(list, now, ttl)) then
  if limit > 0 and redis.call('ZCARD', P..'o:'..list) >= limit then return {'E', 'full'} end
  hold(mid, rec, x, y, z)
  offput(list, mid, tonumber(x))
  st = 1
end
local out = {delivered, rejected, st, stored()}
for _, l in ipairs(locals) do out[#out + 1] = l end
return out
`)

	// park: 3 sid, 4 ack (-1: none), 5 owner, 6 deadline (ms), 7 now (ms):
	// the session's idle clock moves to now, and to the deadline while the
	// poll is parked.
	// → {"E", why}, {"M", take, stored bytes} (answer at once), or {"P",
	// local owner of the poll it superseded or "", stored bytes}.
	parkScript = script(`
local sid, ack, owner = ARGV[3], tonumber(ARGV[4]), ARGV[5]
if redis.call('HEXISTS', P..'s', sid) == 0 then return {'E', 'notfound'} end
redis.call('ZADD', P..'i', 'XX', 'GT', ARGV[7], sid)
if ack >= 0 and acked(sid, ack) then return {'E', 'cursor'} end
local t = take(sid)
if t then return {'M', t, stored()} end
local q = P..'q:'..sid
local prev = redis.call('HGET', q, 'o')
local mine = ''
if prev and prev ~= owner then
  if node(prev) == ME then mine = prev else publish(node(prev), 's '..sid..' '..prev) end
end
redis.call('HSET', q, 'o', owner)
redis.call('ZADD', P..'i', 'XX', 'GT', ARGV[6], sid)
return {'P', mine, stored()}
`)

	// unpark: 3 sid, 4 owner, 5 mode: "w" (woken: take the messages if
	// any, else stay parked), "s" (a sweep after notifications may have
	// been lost: "w", and what a lost "m" carried), "t" (the hold passed:
	// leave with what is pending), "x" (leave without messages). → {"X", why} when owner is
	// not parked there: "gone" (the session ended), "other" (another poll
	// is), "none" (a script took messages for it, and its node answers
	// it); {"M", take}, or {"N"} (nothing).
	unparkScript = script(`
local sid, owner, mode = ARGV[3], ARGV[4], ARGV[5]
local q = P..'q:'..sid
local o = redis.call('HGET', q, 'o')
if o ~= owner then
  if redis.call('HEXISTS', P..'s', sid) == 0 then return {'X', 'gone'} end
  if o then return {'X', 'other'} end
  if mode == 't' or mode == 's' then
    -- a script took messages for this poll: if their notification was
    -- lost they are still pending (only a cursor removes them)
    local t = take(sid)
    if t then return {'M', t} end
  end
  return {'X', 'none'}
end
local t = nil
if mode ~= 'x' then t = take(sid) end
if t then
  redis.call('HDEL', q, 'o')
  return {'M', t}
end
if mode == 't' or mode == 'x' then redis.call('HDEL', q, 'o') end
return {'N'}
`)

	// ack: 3 sid, 4 ack. → {"E", why} or {stored bytes}.
	ackScript = script(`
if redis.call('HEXISTS', P..'s', ARGV[3]) == 0 then return {'E', 'notfound'} end
if acked(ARGV[3], tonumber(ARGV[4])) then return {'E', 'cursor'} end
return {stored()}
`)

	// remember: 3 key, 4 result ("p:<token>": pending, the push of that
	// token under way), 5 expires (ms), 6 now, 7 "settle" to record
	// regardless. → the recorded value when key is live, else nil.
	rememberScript = script(`
local key = ARGV[3]
if ARGV[7] ~= 'settle' then
  local e = redis.call('ZSCORE', P..'k', key)
  if e and tonumber(e) > tonumber(ARGV[6]) then return redis.call('HGET', P..'kr', key) or '' end
end
redis.call('ZADD', P..'k', ARGV[5], key)
redis.call('HSET', P..'kr', key, ARGV[4])
return false
`)

	// renew: 3 key, 4 the pending value of the push under way, 5 its new
	// expiry (ms): extended only while that push holds the key.
	renewScript = script(`
if redis.call('HGET', P..'kr', ARGV[3]) == ARGV[4] then redis.call('ZADD', P..'k', 'XX', ARGV[5], ARGV[3]) end
return 1
`)

	// forget: 3 key, 4 the pending value of the push that gives it up
	// (another push's key stays), or "": whatever it holds.
	forgetScript = script(`
if ARGV[4] == '' or redis.call('HGET', P..'kr', ARGV[3]) == ARGV[4] then
  redis.call('ZREM', P..'k', ARGV[3])
  redis.call('HDEL', P..'kr', ARGV[3])
end
return 1
`)

	// cleanup: 3 now, 4 offline ttl (ms), 5 at most. → {offline messages
	// dropped, more to do (1/0)}.
	cleanupScript = script(`
local now, ttl, most = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local more = 0
local ids = redis.call('ZRANGEBYSCORE', P..'k', '-inf', now, 'LIMIT', 0, most)
for _, key in ipairs(ids) do
  redis.call('ZREM', P..'k', key)
  redis.call('HDEL', P..'kr', key)
end
if #ids == most then more = 1 end
local gone = redis.call('ZRANGEBYSCORE', P..'ox', '-inf', now, 'LIMIT', 0, most)
for _, e in ipairs(gone) do
  local list, mid = string.match(e, '^(.*)\n([^\n]*)$')
  redis.call('ZREM', P..'ox', e)
  if redis.call('ZREM', P..'o:'..list, mid) == 1 then
    redis.call('HINCRBY', C, 'offline', -1)
    drop(mid)
  end
end
if #gone == most then more = 1 end
local names = redis.call('ZRANGEBYSCORE', P..'n', '-inf', now - ttl, 'LIMIT', 0, most)
for _, list in ipairs(names) do
  redis.call('ZREM', P..'n', list)
  redis.call('HINCRBY', C, 'names', -(#list + 64))
end
if #names == most then more = 1 end
return {#gone, more}
`)

	// stats: → {backlog, offline, stored bytes, ids, sessions, users}.
	statsScript = script(`
local c = redis.call('HMGET', C, 'backlog', 'offline')
return {tonumber(c[1] or '0'), tonumber(c[2] or '0'), stored(), redis.call('ZCARD', P..'k'),
  redis.call('ZCARD', P..'i'), redis.call('HLEN', P..'uc')}
`)

	// lookup: 3 "d" device (4), or "s" session ids (the rest). → the
	// records (nil for a session gone).
	lookupScript = rueidis.NewLuaScriptReadOnly(lib + `
local ids
if ARGV[3] == 'd' then
  local sid = redis.call('HGET', P..'d', ARGV[4])
  if not sid then return {} end
  ids = {sid}
else
  ids = {}
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
end
if #ids == 0 then return {} end
return redis.call('HMGET', P..'s', unpack(ids))
`)
)
