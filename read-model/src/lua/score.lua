-- The one definition of a ready set's score, which every script that puts a job in a ready
-- set starts with: higher priority first (0..9), then earlier enqueue time (ms). 10^13 ms is
-- about 300 years, so the time never reaches into the priority's digit; the sum stays below
-- 2^53 and is exact in a double.
local function ready_score(priority, enqueued_ms)
  return (9 - (tonumber(priority) or 0)) * 1e13 + enqueued_ms
end
