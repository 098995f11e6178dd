-- Lets the singleton lock KEYS[1] go, only while it still carries this holder's fencing token
-- ARGV[1] (a holder that lost it must not delete the next holder's lock).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
