-- The live namespace of a deployment and whether it is complete, in one round trip: its name
-- (the pointer's value, or the prefix itself), whether it carries the marker, and whether a
-- rebuild holds the rebuild lock.
-- ARGV: prefix, rebuild lock name
local prefix = ARGV[1]
local ns = redis.call('GET', prefix .. ':active') or prefix
local marked = redis.call('EXISTS', ns .. ':model')
local rebuilding = redis.call('EXISTS', prefix .. ':lock:' .. ARGV[2])
return {ns, marked, rebuilding}
