-- Admin search over the seeded users, a different substring each time: "user" and a number up to
-- SEARCH_MAX (the seeded population), so most searches match one to a dozen users.
local max = tonumber(os.getenv("SEARCH_MAX") or "99999")
request = function()
  local body = '{"query":"user' .. math.random(1, max) .. '","limit":20}'
  return wrk.format("PUT", "/api/v1/private/users/any",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("ADMIN_TOKEN")}, body)
end
