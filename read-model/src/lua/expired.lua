-- The entries of a running set whose lease ended at or before ARGV[1] (ms), at most ARGV[2],
-- each with what its view says now: a flat list of job id, attempt, status ('' if the view
-- has none). One round trip per queue and sweep instead of one per expired job.
-- KEYS: running set. ARGV: now ms, limit, namespace.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local h = redis.call('HMGET', ARGV[3] .. ':job:' .. id, 'attempt', 'status')
  out[#out + 1] = id
  out[#out + 1] = h[1] or '0'
  out[#out + 1] = h[2] or ''
end
return out
