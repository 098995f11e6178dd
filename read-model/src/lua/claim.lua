-- A worker's claim on the dispatch model of one tenant: for each queue in turn, moves the
-- scheduled jobs that are due to the ready set, then pops the best ready jobs (priority, then
-- enqueue time) and records them as running until `lease_ms` from now, up to `max` in all.
-- Returns a flat list: queue, job id, the attempt the claim may start, for each claimed job.
-- The claim is followed by a Start command; the aggregate refuses a stale one, so a job
-- attempt starts at most once even if this model lags behind the event stream.
-- ARGV: ns, tenant, now_ms, lease_ms, max, queue*
local ns, tenant = ARGV[1], ARGV[2]
local now, lease, max = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local claimed = {}
local left = max
for q = 6, #ARGV do
  if left <= 0 then break end
  local suffix = ':' .. tenant .. ':' .. ARGV[q]
  local ready, scheduled = ns .. ':ready' .. suffix, ns .. ':scheduled' .. suffix
  local due = redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'WITHSCORES', 'LIMIT', 0, left)
  for i = 1, #due, 2 do
    local id, at = due[i], tonumber(due[i + 1])
    local priority = redis.call('HGET', ns .. ':job:' .. id, 'priority')
    redis.call('ZREM', scheduled, id)
    redis.call('ZADD', ready, ready_score(priority, at), id)
  end
  local popped = redis.call('ZPOPMIN', ready, left)
  for i = 1, #popped, 2 do
    local id = popped[i]
    local attempt = tonumber(redis.call('HGET', ns .. ':job:' .. id, 'attempt') or '0')
    redis.call('ZADD', ns .. ':running' .. suffix, now + lease, id)
    claimed[#claimed + 1] = ARGV[q]
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = attempt + 1
    left = left - 1
  end
end
return claimed
