-- Read one queue's depths in one atomic step (for inspect, metrics and the operator).
-- KEYS[1..10] ready lists, KEYS[11] scheduled, KEYS[12] leased, KEYS[13] dead, KEYS[14] workers.
-- ARGV[1] key prefix.
-- Returns {{ready per priority 0..9}, scheduled, scheduled due, leased, dead,
--          {worker id, {field, value, ...}, ...}}.
local prefix = ARGV[1]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ready = {}
for p = 1, 10 do ready[p] = redis.call('LLEN', KEYS[p]) end
local workers = {}
local live = redis.call('ZRANGEBYSCORE', KEYS[14], now_ms, '+inf')
for i = 1, #live do
  workers[#workers + 1] = live[i]
  workers[#workers + 1] = redis.call('HGETALL', prefix .. 'w:' .. live[i])
end
return {
  ready,
  redis.call('ZCARD', KEYS[11]),
  redis.call('ZCOUNT', KEYS[11], '-inf', now_ms),
  redis.call('ZCARD', KEYS[12]),
  redis.call('LLEN', KEYS[13]),
  workers,
}
