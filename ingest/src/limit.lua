-- Two token buckets of one tenant (lines, bytes), checked and taken together.
-- KEYS[1]: the tenant's hash {l = line tokens, b = byte tokens, t = last update in ms}
-- ARGV: lines, bytes, line rate/s, line burst, byte rate/s, byte burst (a rate of 0: no limit)
-- Returns 0 when the request is let in (the tokens are taken), else the milliseconds to
-- wait until both buckets hold what the request needs (capped at a burst).
local lines, bytes = tonumber(ARGV[1]), tonumber(ARGV[2])
local line_rate, line_burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local byte_rate, byte_burst = tonumber(ARGV[5]), tonumber(ARGV[6])

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'l', 'b', 't')
local last = tonumber(state[3]) or now

-- The bucket's level now: what it held plus the refill since, at most a burst.
local function level(stored, rate, burst)
  if stored == false or stored == nil then return burst end
  return math.min(burst, tonumber(stored) + (now - last) * rate / 1000)
end

local l = level(state[1], line_rate, line_burst)
local b = level(state[2], byte_rate, byte_burst)

-- A request larger than a burst needs a full bucket, and leaves it in debt.
local wait = 0
if line_rate > 0 and l < math.min(lines, line_burst) then
  wait = math.max(wait, (math.min(lines, line_burst) - l) * 1000 / line_rate)
end
if byte_rate > 0 and b < math.min(bytes, byte_burst) then
  wait = math.max(wait, (math.min(bytes, byte_burst) - b) * 1000 / byte_rate)
end
if wait > 0 then
  return math.ceil(wait)
end

if line_rate > 0 then l = l - lines end
if byte_rate > 0 then b = b - bytes end
redis.call('HSET', KEYS[1], 'l', tostring(l), 'b', tostring(b), 't', now)

-- Gone once both buckets would be full again: a missing key reads as full.
local ttl = 1000
if line_rate > 0 then ttl = math.max(ttl, (line_burst - l) * 1000 / line_rate) end
if byte_rate > 0 then ttl = math.max(ttl, (byte_burst - b) * 1000 / byte_rate) end
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl) + 1000)
return 0
