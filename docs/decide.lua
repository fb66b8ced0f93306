wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"user": "u-%d", "context": {"timezone": "Europe/Berlin", "device": "mobile"}, "placements": [{"slot": "home_feed", "count": 10}], "explain": true}', (n * 7919) % 100000)
  return wrk.format(nil, "/v1/decide", nil, body)
end
