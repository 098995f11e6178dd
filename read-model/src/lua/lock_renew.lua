-- Renews the singleton lock KEYS[1] for ARGV[2] ms, only while it still carries this holder's
-- fencing token ARGV[1]. Returns 1 renewed, 0 lost.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
