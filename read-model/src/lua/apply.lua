-- Applies one event to a job's view, only if it is the next in the job's sequence.
-- Returns {1, seq} applied, {0, last} already applied (a duplicate or a redelivery), or
-- {2, last} a gap: an earlier event is missing, nothing is written.
-- Key names follow keys.rs; they are built here because the job's queue and type, needed for
-- the index and dispatch keys, live in its hash (a single Redis, not a cluster).
-- The hash is read once (HMGET) and written once (HSET): calls into Redis dominate the cost.
-- A job put in a ready set is announced as '{tenant}:{queue}' on the wake channel, so claims
-- waiting on that queue look at once (see dispatch.rs).
-- ARGV: ns, tenant, id, seq, at_ms, status ('' = unchanged), dispatch kind, dispatch ms,
--       wake channel ('' = none), n_set, (field, value)*, n_clear, field*, n_labels, label*
local ns, tenant, id = ARGV[1], ARGV[2], ARGV[3]
local seq, at = tonumber(ARGV[4]), tonumber(ARGV[5])
local status, dkind, dms, wake = ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[9]
local job = ns .. ':job:' .. id

local current = redis.call('HMGET', job, 'sequence', 'type', 'queue', 'status', 'priority')
local last = tonumber(current[1] or '0')
if seq <= last then return {0, last} end
if seq ~= last + 1 then return {2, last} end
local jtype, queue, old, priority = current[2] or '', current[3] or '', current[4], current[5]

local i = 10
local fields = {}
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local field, value = ARGV[i], ARGV[i + 1]
  fields[#fields + 1] = field
  fields[#fields + 1] = value
  if field == 'type' then jtype = value
  elseif field == 'queue' then queue = value
  elseif field == 'priority' then priority = value end
  i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
if n > 0 then
  redis.call('HDEL', job, unpack(ARGV, i, i + n - 1))
  i = i + n
end
if status ~= '' then
  fields[#fields + 1] = 'status'
  fields[#fields + 1] = status
end
fields[#fields + 1] = 'sequence'
fields[#fields + 1] = seq
fields[#fields + 1] = 'updated_at'
fields[#fields + 1] = at
redis.call('HSET', job, unpack(fields))

local idx = ns .. ':idx:' .. tenant .. ':'
local counts = ns .. ':count:' .. tenant

if seq == 1 then
  redis.call('ZADD', idx .. 'all', at, id)
  redis.call('ZADD', idx .. 'type:' .. jtype, at, id)
  redis.call('ZADD', idx .. 'queue:' .. queue, at, id)
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do redis.call('ZADD', idx .. 'label:' .. ARGV[i], at, id); i = i + 1 end
  redis.call('HINCRBY', counts, 'type:' .. jtype, 1)
  redis.call('SADD', ns .. ':queues', tenant .. ':' .. queue)
end

if status ~= '' then
  if old then
    redis.call('ZREM', idx .. 'status:' .. old, id)
    redis.call('HINCRBY', counts, 'status:' .. old, -1)
    redis.call('HINCRBY', counts, 'type:' .. jtype .. '/status:' .. old, -1)
  end
  redis.call('ZADD', idx .. 'status:' .. status, at, id)
  redis.call('HINCRBY', counts, 'status:' .. status, 1)
  redis.call('HINCRBY', counts, 'type:' .. jtype .. '/status:' .. status, 1)
end

if dkind ~= 'keep' then
  local suffix = ':' .. tenant .. ':' .. queue
  redis.call('ZREM', ns .. ':ready' .. suffix, id)
  redis.call('ZREM', ns .. ':scheduled' .. suffix, id)
  redis.call('ZREM', ns .. ':running' .. suffix, id)
  if dkind == 'ready' then
    redis.call('ZADD', ns .. ':ready' .. suffix, ready_score(priority, dms), id)
    if wake ~= '' then redis.call('PUBLISH', wake, tenant .. ':' .. queue) end
  elseif dkind == 'scheduled' or dkind == 'running' then
    redis.call('ZADD', ns .. ':' .. dkind .. suffix, dms, id)
  end
end

return {1, seq}
