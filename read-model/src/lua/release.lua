-- A claim the write side could not start goes back from the running set to the ready set,
-- enqueued at ARGV[2] (ms), at the job's own priority (read from its view).
-- KEYS: job hash, running set, ready set. ARGV: job id, enqueued ms.
local priority = redis.call('HGET', KEYS[1], 'priority')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ready_score(priority, tonumber(ARGV[2])), ARGV[1])
