-- Admin search over the seeded users, a different substring each time.
request = function()
  local body = '{"query":"user' .. math.random(1, 99999) .. '","limit":20}'
  return wrk.format("PUT", "/api/v1/private/users/any",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("ADMIN_TOKEN")}, body)
end
