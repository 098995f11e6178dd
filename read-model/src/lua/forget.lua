-- Removes one job from the read model: its hash, its members in every index and dispatch set,
-- and its share of the counters, so that `ordo replay --job` can re-apply its history from
-- sequence 1 in place. Returns 1 if the job had a hash, 0 if not.
-- Counters are decremented under what the job was counted with (see the witnesses below),
-- so they stay exact even when some of the view is corrupt. Memberships are removed both where the hash says and where the job's
-- first event says (ZREM of an absent member does nothing), so a view whose hash disagrees
-- with its indexes is cleaned up all the same. The `queues` set is left alone: other jobs
-- share its members, and the re-applied history adds the job's back.
-- ARGV: ns, id, tenant, type, queue (from the job's JobSubmitted event),
--       n_statuses, status*, n_labels, label* (`key=value`, from the same event)
local ns, id = ARGV[1], ARGV[2]
local job = ns .. ':job:' .. id

local i = 6
local statuses = {}
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do statuses[#statuses + 1] = ARGV[i]; i = i + 1 end
local labels = {}
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do labels[#labels + 1] = ARGV[i]; i = i + 1 end

local function unindex(tenant, jtype, queue, job_labels)
  local idx = ns .. ':idx:' .. tenant .. ':'
  redis.call('ZREM', idx .. 'all', id)
  redis.call('ZREM', idx .. 'type:' .. jtype, id)
  redis.call('ZREM', idx .. 'queue:' .. queue, id)
  for _, status in ipairs(statuses) do redis.call('ZREM', idx .. 'status:' .. status, id) end
  for _, label in ipairs(job_labels) do redis.call('ZREM', idx .. 'label:' .. label, id) end
  local suffix = ':' .. tenant .. ':' .. queue
  redis.call('ZREM', ns .. ':ready' .. suffix, id)
  redis.call('ZREM', ns .. ':scheduled' .. suffix, id)
  redis.call('ZREM', ns .. ':running' .. suffix, id)
end

local exists = redis.call('EXISTS', job) == 1
local h = redis.call('HMGET', job, 'tenant', 'type', 'queue', 'status', 'labels')
local tenant = h[1] or ARGV[3]
local idx = ns .. ':idx:' .. tenant .. ':'
local counted = exists or redis.call('ZSCORE', idx .. 'all', id)
local jtype = exists and (h[2] or '') or ARGV[4]
-- apply.lua moves a status counter and the status index entry together: the entry is the
-- best witness of the counted status, the hash's field the fallback.
local status = nil
for _, s in ipairs(statuses) do
  if redis.call('ZSCORE', idx .. 'status:' .. s, id) then status = s; break end
end
status = status or h[4]

unindex(ARGV[3], ARGV[4], ARGV[5], labels)
if exists then
  local stored_labels = {}
  if h[5] then
    local ok, decoded = pcall(cjson.decode, h[5])
    if ok and type(decoded) == 'table' then
      for k, v in pairs(decoded) do stored_labels[#stored_labels + 1] = k .. '=' .. tostring(v) end
    end
  end
  unindex(tenant, h[2] or '', h[3] or '', stored_labels)
end

if counted then
  local counts = ns .. ':count:' .. tenant
  redis.call('HINCRBY', counts, 'type:' .. jtype, -1)
  if status then
    redis.call('HINCRBY', counts, 'status:' .. status, -1)
    redis.call('HINCRBY', counts, 'type:' .. jtype .. '/status:' .. status, -1)
  end
end
redis.call('DEL', job)
return exists and 1 or 0
