-- Body-form refresh. One connection per thread, each with its own session: every response's
-- rotated token is the next request's, as a real client would do.
local tokens = {}
local next_thread = 1
function setup(thread)
  if #tokens == 0 then
    for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
  end
  thread:set("token", tokens[next_thread])
  next_thread = next_thread + 1
end
request = function()
  return wrk.format("POST", "/api/v1/public/users/refresh", {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. token .. '"}')
end
response = function(status, headers, body)
  local t = body:match('"refresh_token":"([^"]+)"')
  if t then token = t end
end
