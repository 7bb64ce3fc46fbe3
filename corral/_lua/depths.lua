-- Read one queue's depths in one atomic step (for inspect, metrics and the operator).
-- No record keys: the worker entries are those the workers set lists.
-- Returns {{ready per priority 0..9}, scheduled, scheduled due, leased, dead,
--          {worker id, {field, value, ...}, ...}, cancelled ids still in a ready list,
--          ids held back by a rate or concurrency limit}.
local now_ms = clock_ms()
local ready = {}
for p = 1, PRIORITIES do ready[p] = redis.call('LLEN', KEYS[p]) end
local workers = {}
local live = redis.call('ZRANGEBYSCORE', WORKERS, now_ms, '+inf')
for i = 1, #live do
  workers[#workers + 1] = live[i]
  workers[#workers + 1] = redis.call('HGETALL', worker_key(live[i]))
end
return {
  ready,
  redis.call('ZCARD', SCHEDULED),
  redis.call('ZCOUNT', SCHEDULED, '-inf', now_ms),
  redis.call('ZCARD', LEASED),
  redis.call('ZCARD', DEAD),
  workers,
  redis.call('SCARD', CANCELLED),
  redis.call('ZCARD', LIMITED),
}
