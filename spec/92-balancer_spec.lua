-- spec/92-balancer_spec.lua: a real HAProxy (mode tcp, send-proxy-v2,
-- health checks that send a PROXY v2 LOCAL header, retries with
-- redispatch) in front of two duplex.cluster programs of two workers each,
-- listening with { proxy = true } on 127.0.0.2 and 127.0.0.3 (two
-- machines, as far as the balancer can tell); the clients connect through
-- HAProxy from 127.0.0.5 (issue 20). Every backend names the true client;
-- a backend killed with -9 (master and workers) is routed around once
-- HAProxy marks it down, and nothing that reached the survivor is lost; a
-- backend reloaded with SIGHUP drops nothing. HAProxy's state is read from
-- its stats socket (a unix socket in the test's directory); every wait is
-- for a state, bounded. HAProxy runs as a child process without the
-- preloads of the run (as in spec 90) and is ended by its pid; pending
-- when haproxy is not installed.

local duplex = require "duplex"
local helpers = require "spec.helpers"

local q = helpers.shquote
local defer = helpers.defer   -- (busted keeps one `finally` only: helpers.run_cleanups runs these)

local function has(cmd) return helpers.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true end
local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end
local HAPROXY = has("haproxy") and "haproxy" or exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy"

-- Poll pred() every 20 ms until it is true (returns its value); fails
-- after `limit` seconds (a hang guard). Inside duplex.run the other tasks
-- go on meanwhile.
local function poll(pred, limit, what)
  local deadline = duplex.now() + (limit or 10)
  while true do
    local v = pred()
    if v then return v end
    assert(duplex.now() < deadline, "timed out waiting: " .. (what or "?"))
    duplex.sleep(0.02)
  end
end

-- The event lines of a cluster's workers: { {kind, ...}, ... }
local function events(dir)
  local t = {}
  for line in (helpers.slurp(dir .. "/events") or ""):gmatch("[^\n]+") do
    local e = {}
    for w in line:gmatch("%S+") do e[#e + 1] = tonumber(w) or w end
    t[#t + 1] = e
  end
  return t
end

-- The cluster program of one backend (TEST_HOST): main(id, servers)
-- appends "ready id gen pid port"; a LOCAL connection (HAProxy's health
-- check) is closed at once; a request "fast TAG" or "slow TAG" is noted
-- as "got TAG kind" when read ("slow" then answers after 0.3 s: a request
-- in flight) and answered with
-- "<backend host> <worker id> <gen> <version> <client host> TAG",
-- the client host being the one of the PROXY header and version the first
-- line of the file `version` as the worker read it when it started.
local WORKER = [==[
local duplex = require "duplex"
local core = require "duplex.core"
local dir = assert(os.getenv("TEST_DIR"))
local host = assert(os.getenv("TEST_HOST"))
local function event(...)
  local f = assert(io.open(dir .. "/events", "a"))
  f:write(table.concat({ ... }, " "), "\n")
  f:close()
end
local function version()
  local f = io.open(dir .. "/version")
  local v = f and f:read("*l") or "none"
  if f then f:close() end
  return v
end
local function main(id, servers)
  local gen = os.getenv("DUPLEX_CLUSTER_GEN")
  local v = version()
  local _, port = servers[1]:getsockname()
  event("ready", id, gen, core.proc_getpid(), port)
  servers[1]:serve(function(c)
    local info = c:proxyinfo()
    if not info or info.command == "LOCAL" then return end
    local line = c:read("l")
    local kind, tag = (line or ""):match("^(%a+) (%S+)$")
    if not kind then return end
    event("got", tag, kind)
    if kind == "slow" then duplex.sleep(0.3) end
    c:write(host, " ", id, " ", gen, " ", v, " ", (c:getpeername()), " ", tag, "\n")
  end)
end
assert(duplex.cluster({ workers = 2, listen = { host, 0, { proxy = true } }, grace = 5 }, main))
]==]

-- Start the cluster program of one backend on host: { proc, dir, host }.
-- Stopped and removed when the test ends.
local function start_cluster(host)
  local dir = helpers.mktemp_dir("balancer")
  helpers.spit(dir .. "/app.lua", WORKER)
  helpers.spit(dir .. "/version", "v1\n")
  local proc = helpers.spawn_process(("env TEST_DIR=%s TEST_HOST=%s %s %s 2>%s"):format(
    q(dir), host, helpers.lua, q(dir .. "/app.lua"), q(dir .. "/err")))
  defer(function() helpers.execute("rm -rf " .. q(dir)) end)
  defer(function() proc:close() end)
  return { proc = proc, dir = dir, host = host }
end

-- The workers of generation gen ready: { [id] = pid }, and the port.
local function ready_ids(dir, gen)
  local ids, port = {}, nil
  for _, e in ipairs(events(dir)) do
    if e[1] == "ready" and (gen == nil or e[3] == gen) then ids[e[2]] = e[4]; port = e[5] end
  end
  return ids, port
end

-- The requests a backend read: { [tag] = kind }
local function got(dir)
  local t = {}
  for _, e in ipairs(events(dir)) do
    if e[1] == "got" then t[e[2]] = e[3] end
  end
  return t
end

local function gone(pid) return not helpers.slurp("/proc/" .. pid .. "/stat") end

-- A port free on 127.0.0.1 now (the kernel's choice; HAProxy binds it next).
local function free_port()
  local s = assert(duplex.listen("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

-- HAProxy's view of its servers, from `show stat` on the stats socket:
-- { [server name] = { status = "UP"|"DOWN"|..., check = "L4OK"|... } }, or
-- nil before the socket answers.
local function servers_state(sock)
  local c = duplex.connect("unix:" .. sock, nil, { timeout = 2 })
  if not c then return nil end
  c:settimeout(2)
  c:write("show stat\n")
  local text = c:read("a")
  c:close()
  if not text then return nil end
  local t = {}
  for line in text:gmatch("[^\n]+") do
    local f = {}
    for v in (line .. ","):gmatch("([^,]*),") do f[#f + 1] = v end
    if f[1] == "be" and f[2] ~= "BACKEND" then t[f[2]] = { status = f[18], check = f[37] } end
  end
  return t
end

-- One request through HAProxy from 127.0.0.5, a fresh connection: the
-- parsed answer { host, id, gen, version, client, tag }, or nil, msg, code.
local function ask(port, kind, tag)
  local c, msg, code = duplex.connect("127.0.0.1", port, { bind = "127.0.0.5", timeout = 5 })
  if not c then return nil, msg, code end
  c:settimeout(5)
  local ok, wmsg, wcode = c:write(kind, " ", tag, "\n")
  if not ok then c:close(); return nil, wmsg, wcode end
  local r, rmsg, rcode = c:read("l")
  c:close()
  if not r then return nil, rmsg or "closed without an answer", rcode end
  local host, id, gen, version, client, rtag = r:match("^(%S+) (%d) (%d+) (v%d) (%S+) (%S+)$")
  if rtag ~= tag then return nil, "a wrong answer: " .. r end
  return { host = host, id = tonumber(id), gen = tonumber(gen), version = version, client = client, tag = tag }
end

-- Two clusters (a on 127.0.0.2, b on 127.0.0.3) and HAProxy in front of
-- them, both servers UP with a passed health check: { a, b, fe, stats },
-- or nil when haproxy is missing (the test is then pending).
local function setup()
  if not HAPROXY then
    pending("haproxy is not installed (Debian: apt-get install haproxy)")
    return nil
  end
  local dir = helpers.mktemp_dir("haproxy")
  defer(function() helpers.execute("rm -rf " .. q(dir)) end)
  local a, b = start_cluster("127.0.0.2"), start_cluster("127.0.0.3")
  for _, be in ipairs({ a, b }) do
    poll(function() local t = ready_ids(be.dir); return t[1] and t[2] end, 10, be.host .. "'s two workers ready")
    local _, port = ready_ids(be.dir)
    be.port = port
  end
  local fe, stats = free_port(), dir .. "/stats.sock"
  helpers.spit(dir .. "/haproxy.cfg", table.concat({
    "global", "  maxconn 500", ("  stats socket %s mode 600 level admin"):format(stats),
    "defaults", "  mode tcp", "  timeout connect 2s", "  timeout client 10s", "  timeout server 10s",
    "  retries 3", "  option redispatch 1",
    "frontend fe", ("  bind 127.0.0.1:%d"):format(fe), "  default_backend be",
    "backend be", "  balance roundrobin",
    ("  server a 127.0.0.2:%d send-proxy-v2 check check-send-proxy inter 100ms fall 2 rise 2"):format(a.port),
    ("  server b 127.0.0.3:%d send-proxy-v2 check check-send-proxy inter 100ms fall 2 rise 2"):format(b.port),
    "",
  }, "\n"))
  local proc = helpers.spawn_process(("env -u LD_PRELOAD %s -f %s -db >%s 2>&1"):format(
    HAPROXY, q(dir .. "/haproxy.cfg"), q(dir .. "/haproxy.log")))
  defer(function() proc:close() end)
  poll(function()
    local s = servers_state(stats)
    return s and s.a and s.b and s.a.status == "UP" and s.b.status == "UP"
      and s.a.check == "L4OK" and s.b.check == "L4OK"
  end, 10, "both servers UP with a passed check (HAProxy's log: "
    .. tostring(helpers.slurp(dir .. "/haproxy.log")) .. ")")
  return { a = a, b = b, fe = fe, stats = stats, haproxy = proc }
end

-- Inside duplex.run: `n` client tasks, each asking in a loop until
-- stop() (task i asks "slow" when slow(i) is true), each request a fresh
-- connection with a new tag, 5 ms apart (a pace, not a wait: without it
-- the loops make some 10000 connections a second, whose TIME_WAIT
-- entries would crowd the loopback's ports for the next runs). Returns
-- the record and stop(), which joins them: rec.answers (in order, each
-- with the phase when its request started), rec.failures ({ tag, msg,
-- phase }).
local function clients(fe, n, slow)
  local rec = { answers = {}, failures = {}, phase = 1, next = 0 }
  local stopping = false
  local tasks = {}
  for i = 1, n do
    tasks[i] = duplex.spawn(function()
      while not stopping do
        rec.next = rec.next + 1
        local tag = "r" .. rec.next
        local phase = rec.phase
        local r, msg = ask(fe, slow and slow(i) and "slow" or "fast", tag)
        if r then
          r.phase = phase
          rec.answers[#rec.answers + 1] = r
        else rec.failures[#rec.failures + 1] = { tag = tag, msg = tostring(msg), phase = phase } end
        duplex.sleep(0.005)
      end
    end)
  end
  return rec, function()
    stopping = true
    for _, t in ipairs(tasks) do t:join() end
  end
end

local function count(list, pred)
  local n = 0
  for _, v in ipairs(list) do if pred(v) then n = n + 1 end end
  return n
end

local function report(...)
  if os.getenv("DUPLEX_SPEC_REPORT") then io.stderr:write("92-balancer: ", string.format(...), "\n") end
end

describe("HAProxy in front of two duplex.cluster backends #nomemcheck", function()
  after_each(helpers.run_cleanups)

  it("every request is answered, each backend names the true client (127.0.0.5), both serve", function()
    local env = setup()
    if not env then return end
    local per = { ["127.0.0.2"] = 0, ["127.0.0.3"] = 0 }
    duplex.run(function()
      for i = 1, 40 do
        local r, msg = ask(env.fe, "fast", "q" .. i)
        assert(r, msg)
        assert.same({ "127.0.0.5", 1, "v1" }, { r.client, r.gen, r.version })
        assert.truthy(r.id == 1 or r.id == 2)
        per[r.host] = per[r.host] + 1
      end
    end)
    assert.same({ ["127.0.0.2"] = 20, ["127.0.0.3"] = 20 }, per)      -- roundrobin
  end)

  -- Requests in flight on the killed backend (read by it, or queued in its
  -- listen queue) cannot be saved: HAProxy has sent their bytes. They are
  -- counted (0 or a few: in 17 runs, 1 each time, the slow request that a
  -- was serving, "closed without an answer", and once 1 more that started
  -- between the kill and DOWN) and must all be the dead one's; nothing that
  -- reached the survivor fails, and nothing fails once HAProxy marks the
  -- dead one DOWN (retries with redispatch: a refused connect goes to b).
  it("a backend killed with -9 is routed around: 0 failures after DOWN, the survivor loses nothing", function()
    local env = setup()
    if not env then return end
    local a, b = env.a, env.b
    local rec
    local inflight_b
    duplex.run(function()
      local stop
      rec, stop = clients(env.fe, 4, function(i) return i <= 2 end)
      poll(function() return #rec.answers >= 20 end, 10, "steady answers")
      -- a slow request in flight on b (read, not yet answered), then kill a
      poll(function()
        local answered = {}
        for _, r in ipairs(rec.answers) do answered[r.tag] = true end
        for tag, kind in pairs(got(b.dir)) do
          if kind == "slow" and not answered[tag] then inflight_b = tag; return true end
        end
      end, 10, "a slow request in flight on b")
      local ids = ready_ids(a.dir)
      assert(helpers.execute(("kill -KILL %d %d %d"):format(a.proc.pid, ids[1], ids[2])))
      rec.phase = 2                                   -- killed, not yet DOWN
      assert.same({ nil, "signal", 9 }, { a.proc:wait(5) })
      for _, pid in pairs(ids) do poll(function() return gone(pid) end, 5, "a's worker gone") end
      poll(function()
        local s = servers_state(env.stats)
        return s and s.a and s.a.status:match("^DOWN")
      end, 10, "HAProxy marks a DOWN")
      rec.phase = 3                                   -- DOWN
      poll(function()
        return count(rec.answers, function(r) return r.phase == 3 end) >= 40
      end, 20, "40 answers after DOWN")
      stop()
    end)
    local b_got = got(b.dir)
    local answered = {}
    for _, r in ipairs(rec.answers) do answered[r.tag] = r end
    -- the slow request in flight on b when a was killed was answered by b
    assert.truthy(answered[inflight_b], inflight_b)
    assert.equal("127.0.0.3", answered[inflight_b].host)
    -- no failure reached b; none started after DOWN
    local failed_after, failed_on_b = {}, {}
    for _, f in ipairs(rec.failures) do
      if b_got[f.tag] then failed_on_b[#failed_on_b + 1] = f end
      if f.phase == 3 then failed_after[#failed_after + 1] = f end
    end
    assert.same({}, failed_on_b)
    assert.same({}, failed_after)
    -- after DOWN every answer is b's; every answer names the client
    for _, r in ipairs(rec.answers) do
      assert.equal("127.0.0.5", r.client)
      if r.phase == 3 then assert.equal("127.0.0.3", r.host) end
    end
    assert.truthy(count(rec.answers, function(r) return r.host == "127.0.0.2" end) > 0)
    report("kill: %d answers (%d started after DOWN); failed: %d started before the kill, %d between the kill and DOWN, 0 after DOWN%s",
      #rec.answers, count(rec.answers, function(r) return r.phase == 3 end),
      count(rec.failures, function(f) return f.phase == 1 end), count(rec.failures, function(f) return f.phase == 2 end),
      #rec.failures > 0 and (" (" .. rec.failures[1].msg .. ")") or "")
  end)

  it("a backend reloaded with SIGHUP drops nothing; its new generation answers", function()
    local env = setup()
    if not env then return end
    local b = env.b
    local rec
    duplex.run(function()
      local stop
      rec, stop = clients(env.fe, 4, function(i) return i == 1 end)
      poll(function() return #rec.answers >= 20 end, 10, "steady answers")
      local old = ready_ids(b.dir, 1)
      helpers.spit(b.dir .. "/version", "v2\n")
      assert(helpers.execute(("kill -HUP %d"):format(b.proc.pid)))
      rec.phase = 2
      poll(function() local t = ready_ids(b.dir, 2); return t[1] and t[2] end, 10, "b's generation 2 ready")
      for _, pid in pairs(old) do poll(function() return gone(pid) end, 10, "b's old worker gone") end
      rec.phase = 3                                   -- only generation 2 on b
      poll(function()
        return count(rec.answers, function(r) return r.phase == 3 and r.host == "127.0.0.3" end) >= 20
      end, 20, "20 answers from b after the reload")
      stop()
    end)
    assert.same({}, rec.failures)
    local from_b = { v1 = 0, v2 = 0 }
    for _, r in ipairs(rec.answers) do
      assert.equal("127.0.0.5", r.client)
      if r.host == "127.0.0.3" then
        from_b[r.version] = from_b[r.version] + 1
        if r.phase == 3 then assert.same({ 2, "v2" }, { r.gen, r.version }) end
      else
        assert.same({ 1, "v1" }, { r.gen, r.version })
      end
    end
    assert.truthy(from_b.v1 > 0 and from_b.v2 > 0)
    report("reload: %d answers, b: %d from v1, %d from v2, 0 failed", #rec.answers, from_b.v1, from_b.v2)
    assert(helpers.execute(("kill -TERM %d"):format(b.proc.pid)))
    assert.same({ true, "exit", 0 }, { b.proc:wait(15) })
  end)
end)
