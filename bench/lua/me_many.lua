-- GET /users/me with a different session on each request: ACCESS_TOKENS names a file of access
-- tokens (one signed-in session each, over as many users); every request takes a random one, so
-- the service checks as many distinct sessions as a real crowd would, not one session 32 times.
-- HEADER is "Authorization" (Bearer) or "Cookie" (the access cookie); ME_PATH another private GET
-- route to ask instead of /users/me (the inbox). Requests are formatted
-- once per thread, so the load generator spends its CPU on sending them.
local tokens = {}
for line in io.lines(os.getenv("ACCESS_TOKENS")) do tokens[#tokens + 1] = line end
local cookie = os.getenv("HEADER") == "Cookie"
local prefix = cookie and "access_token=" or "Bearer "
local name = cookie and "Cookie" or "Authorization"
local path = os.getenv("ME_PATH") or "/api/v1/private/users/me"
local requests = {}
local thread_no = 0
function setup(thread)
  thread_no = thread_no + 1
  thread:set("seed", thread_no * 7919)
end
function init(args)
  math.randomseed(seed)
  for i, t in ipairs(tokens) do
    requests[i] = wrk.format("GET", path, {[name] = prefix .. t})
  end
end
request = function()
  return requests[math.random(#requests)]
end
