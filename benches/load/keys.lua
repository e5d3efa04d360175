-- wrk script: GET LOAD_PATH with a query that makes the cache key vary.
-- LOAD_KEYS=N: one of N keys at random (?k=0 .. ?k=N-1);
-- LOAD_KEYS=0: a new key on every request (?k=<thread>-<counter>), so every
-- request is a miss of a new cacheable object (or a new pass-through URL).
local path = os.getenv("LOAD_PATH") or "/pass/1k.bin"
local n = tonumber(os.getenv("LOAD_KEYS") or "10000")
local counter = 0
math.randomseed(os.time())
-- Each wrk thread has its own Lua state: a random tag per thread and run.
setup = function(thread)
  thread:set("tag", tostring(math.random(1, 1e9)))
end
request = function()
  if n > 0 then
    return wrk.format("GET", path .. "?k=" .. math.random(0, n - 1))
  end
  counter = counter + 1
  return wrk.format("GET", path .. "?k=" .. tag .. "-" .. counter)
end
