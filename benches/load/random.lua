-- wrk script: GET a random object of a set, /<dir>/<n>.bin with n in [0, N).
-- Set by environment: LOAD_DIR (hot|disk), LOAD_N.
local dir = os.getenv("LOAD_DIR") or "hot"
local n = tonumber(os.getenv("LOAD_N") or "10000")
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/" .. dir .. "/" .. math.random(0, n - 1) .. ".bin")
end
