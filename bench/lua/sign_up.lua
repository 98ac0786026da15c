-- Sign-ups with an email no other request uses (in this run or another: the seed is the clock).
math.randomseed(os.time())
local counter = 0
local id = tostring(math.random(1, 1e9))
function setup(thread)
  thread:set("tid", tostring(math.random(1, 1e9)))
end
request = function()
  counter = counter + 1
  local body = '{"email":"u' .. (tid or id) .. '_' .. counter .. '@bench.example","password":"correct horse battery staple","first_name":"Bench"}'
  return wrk.format("POST", "/api/v1/public/users/sign_up", {["Content-Type"] = "application/json"}, body)
end
