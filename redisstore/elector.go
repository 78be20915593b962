package redisstore

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// errNotLeader: another node holds the jobs' lease.
var errNotLeader = errors.New("another node runs the jobs")

// electScript takes or renews the lease: 3 lease (ms). → 1 when this node
// holds it.
var electScript = rueidis.NewLuaScript(`
local k = ARGV[1]..'leader'
local cur = redis.call('GET', k)
if cur == ARGV[2] then
  redis.call('PEXPIRE', k, ARGV[3])
  return 1
end
if not cur and redis.call('SET', k, ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
return 0
`)

// releaseScript gives the lease up if this node holds it (Close).
var releaseScript = rueidis.NewLuaScript(`
local k = ARGV[1]..'leader'
if redis.call('GET', k) == ARGV[2] then redis.call('DEL', k) end
return 1
`)

// Elector makes the nodes of one deployment agree on one that runs the
// periodic jobs (jobs.Leader, gocron's distributed elector): the node
// that holds a lease in Redis. The holder renews it at every run; when it
// stops (a crash, a deploy), another node takes the lease over once it
// has lapsed, at most lease later.
type Elector struct {
	s     *Store
	lease string
}

// Elector returns the deployment's elector; lease should exceed the
// longest interval between two runs of the jobs.
func (s *Store) Elector(lease time.Duration) *Elector {
	return &Elector{s: s, lease: strconv.FormatInt(max(lease, time.Second).Milliseconds(), 10)}
}

// IsLeader returns nil when this node holds (or has just taken) the
// lease.
func (e *Elector) IsLeader(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, e.s.tmo)
	defer cancel()
	n, err := electScript.Exec(ctx, e.s.client, e.s.keys, []string{e.s.p, e.s.node, e.lease}).AsInt64()
	if err != nil {
		if ctx.Err() != nil { // the scheduler stopping, not Redis failing
			return ctx.Err()
		}
		return e.s.failed(err)
	}
	if n != 1 {
		return errNotLeader
	}
	return nil
}
