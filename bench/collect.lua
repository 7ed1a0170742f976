-- wrk script: POST beacons to /collect the way navigator.sendBeacon does
-- (Content-Type: text/plain, browser User-Agent, Origin of the page), behind a
-- trusted proxy that sets X-Forwarded-For.
--
--   wrk -t1 -c32 -d60s --latency -s bench/collect.lua http://127.0.0.1:PORT/collect -- batch=10
--
-- Script arguments (after "--"), all optional:
--   batch=N     beacons per request; N > 1 sends a JSON array (default 1)
--   site=D      registered site (default example.com)
--   origin=0    do not send an Origin header (default: send the page's origin)
--   pool=N      distinct pre-built requests cycled through (default 4096)
--   seed=N      random seed (default 42)
--
-- Requests are built once in init() and cycled, so wrk spends its (shared) CPU
-- on the socket work, not on string building. They vary the client IP (GeoIP and
-- truncation), the User-Agent (parsed, cached by the server), the page path, the
-- query string (utm_* kept, click IDs dropped), the referrer, language, screen,
-- events with props, and a few device IDs with consent and DNT / Sec-GPC.
--
-- done() prints one line "BENCH_JSON {...}" that bench/serve_bench.py parses:
-- completed requests, responses other than 202, errors and latency percentiles (µs).

local cfg = { batch = 1, site = "example.com", origin = "1", pool = 4096, seed = 42 }

local user_agents = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
  "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
  "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
}

local accept_languages = { "en-US,en;q=0.9", "fr-CA,fr;q=0.9,en;q=0.8", "de-DE,de;q=0.9", "ja,en;q=0.8", "en-GB,en;q=0.7", "" }
local langs = { "en-US", "fr-CA", "de-DE", "ja-JP", "pt-BR" }
local screens = { "1920x1080", "1440x900", "390x844", "412x915", "820x1180", "2560x1440" }
local paths = { "/", "/pricing", "/blog/", "/blog/post-%d", "/docs/getting-started", "/docs/api/%d", "/products/%d", "/about", "/contact" }
local referrers = {
  "", "", "", "https://www.google.com/", "https://www.google.com/search?q=privacy+analytics",
  "https://news.ycombinator.com/item?id=%d", "https://t.co/%d", "https://duckduckgo.com/",
  "https://%s/", "https://www.%s/blog/", "android-app://com.slack/",
}
local queries = {
  "", "", "", "", "?utm_source=newsletter&utm_medium=email&utm_campaign=spring-%d",
  "?utm_source=twitter&utm_medium=social", "?gclid=Cj0KCQjw%d&utm_source=google&utm_medium=cpc",
  "?fbclid=IwAR%d", "?session=%d&email=someone%%40example.org", "?page=%d&sort=asc",
}

local function pick(t) return t[math.random(#t)] end

local function fill(s, site)
  if s:find("%%s") then s = s:format(site) end
  if s:find("%%d") then s = s:format(math.random(1, 9999)) end
  return s
end

local function client_ip()
  local r = math.random(100)
  if r <= 40 then return "203.0.113." .. math.random(1, 254) end            -- CA, two cities
  if r <= 65 then return "198.51.100." .. math.random(1, 254) end           -- FR
  if r <= 75 then return string.format("2001:db8:1:%x::%x", math.random(0, 65535), math.random(1, 65535)) end -- DE
  if r <= 85 then return string.format("2001:db8:2::%x", math.random(1, 65535)) end                         -- JP
  if r <= 95 then return "192.0.2." .. math.random(1, 254) end              -- not in the GeoIP db
  return "198.51.100." .. math.random(1, 254) .. ", 203.0.113." .. math.random(1, 254) -- a proxy chain
end

local function beacon(site, host)
  local url = "https://" .. host .. fill(pick(paths), site) .. fill(pick(queries), site)
  local parts = {
    '"site":"' .. site .. '"',
    '"url":"' .. url .. '"',
    '"screen":"' .. pick(screens) .. '"',
    '"ts":' .. string.format("%d", (os.time() - math.random(0, 5)) * 1000 + math.random(0, 999)),
  }
  local ref = fill(pick(referrers), site)
  if ref ~= "" then parts[#parts + 1] = '"referrer":"' .. ref .. '"' end
  if math.random(100) <= 30 then parts[#parts + 1] = '"lang":"' .. pick(langs) .. '"' end
  if math.random(100) <= 10 then
    parts[#parts + 1] = '"type":"event","name":"signup","props":{"plan":"pro","seats":' .. math.random(1, 50) .. ',"trial":true}'
  end
  if math.random(100) <= 5 then
    parts[#parts + 1] = '"consent":{"analytics":true,"device_id":true},"device_id":"dev-' .. math.random(1, 1e6) .. '"'
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function build_request(path)
  local site = cfg.site
  local host = (math.random(100) <= 20) and ("www." .. site) or site
  local items = {}
  for i = 1, cfg.batch do items[i] = beacon(site, host) end
  local body = cfg.batch == 1 and items[1] or ("[" .. table.concat(items, ",") .. "]")
  local headers = {
    ["Content-Type"] = "text/plain;charset=UTF-8",
    ["User-Agent"] = pick(user_agents),
    ["X-Forwarded-For"] = client_ip(),
  }
  local al = pick(accept_languages)
  if al ~= "" then headers["Accept-Language"] = al end
  if cfg.origin ~= "0" then headers["Origin"] = "https://" .. host end
  local r = math.random(100)
  if r <= 3 then headers["DNT"] = "1" elseif r <= 5 then headers["Sec-GPC"] = "1" end
  return wrk.format("POST", path, headers, body)
end

-- --- wrk hooks --------------------------------------------------------------------

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_id", #threads)
end

local pool = {}
local n = 0

function init(args)
  for _, a in ipairs(args) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    if k then cfg[k] = v end
  end
  cfg.batch = tonumber(cfg.batch)
  cfg.pool = tonumber(cfg.pool)
  math.randomseed(tonumber(cfg.seed) + (thread_id or 0))
  local path = wrk.path ~= "" and wrk.path or "/collect"
  for i = 1, cfg.pool do pool[i] = build_request(path) end
  non202 = 0       -- globals: read by done() through thread:get()
  s503 = 0
  s4xx = 0
end

function request()
  n = n % cfg.pool + 1
  return pool[n]
end

function response(status, headers, body)
  if status ~= 202 then
    non202 = non202 + 1
    if status == 503 then s503 = s503 + 1 elseif status >= 400 and status < 500 then s4xx = s4xx + 1 end
  end
end

function done(summary, latency, requests)
  local non, s5, s4 = 0, 0, 0
  for _, t in ipairs(threads) do
    non = non + (t:get("non202") or 0)
    s5 = s5 + (t:get("s503") or 0)
    s4 = s4 + (t:get("s4xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non202":%d,"s503":%d,"s4xx":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_mean_us":%.1f,"lat_max_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, non, s5, s4,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
