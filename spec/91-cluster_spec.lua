-- spec/91-cluster_spec.lua: inherited listeners (listen("fd:N"),
-- listen("systemd[:NAME]")) and duplex.cluster (issue 20), with real
-- processes. Every program runs as a CHILD process written to a temporary
-- directory: python3 hands descriptors to a Lua child as a supervisor or
-- systemd would; a cluster's master is started with helpers.spawn_process
-- and its workers report what they do by appending lines to a file
-- (O_APPEND: one write per line), which the spec polls for a state, bounded,
-- never for a guessed time. Masters are stopped by PID (TERM, then KILL);
-- a worker whose master is gone stops by itself (the end of its control
-- stream). Loopback and port 0 only.

local duplex = require "duplex"
local helpers = require "spec.helpers"

local q = helpers.shquote

local function python3()
  return helpers.execute("command -v python3 >/dev/null 2>&1") == true
end

-- Poll pred() every 20 ms until it is true (returns its value); fails
-- after `limit` seconds (a hang guard).
local function poll(pred, limit, what)
  local deadline = duplex.now() + (limit or 10)
  while true do
    local v = pred()
    if v then return v end
    assert(duplex.now() < deadline, "timed out waiting: " .. (what or "?"))
    duplex.sleep(0.02)
  end
end

-- The event lines of a cluster program's workers: { {kind, id, ...}, ... }
local function events(dir)
  local t = {}
  for line in (helpers.slurp(dir .. "/events") or ""):gmatch("[^\n]+") do
    local e = {}
    for w in line:gmatch("%S+") do e[#e + 1] = tonumber(w) or w end
    t[#t + 1] = e
  end
  return t
end

local function count(dir, kind, pred)
  local n = 0
  for _, e in ipairs(events(dir)) do
    if e[1] == kind and (not pred or pred(e)) then n = n + 1 end
  end
  return n
end

-- One request: a line out, a line back (or nil, msg, code).
local function ask(port, line, timeout)
  local c, msg, code = duplex.connect("127.0.0.1", port, { timeout = timeout or 5 })
  if not c then return nil, msg, code end
  c:settimeout(timeout or 5)
  local ok, wmsg, wcode = c:write(line, "\n")
  if not ok then c:close(); return nil, wmsg, wcode end
  local r, rmsg, rcode = c:read("l")
  c:close()
  return r, rmsg, rcode
end

-- The worker's side of every cluster program below: main(id, servers)
-- appends "ready id gen pid port" and serves lines: "slow" answers after
-- 0.3 s (a request in flight), "hold" answers at once and keeps the
-- connection until the client closes it; every answer is
-- "<id> <gen> <version>", version being the first line of the file
-- `version` as the worker read it when it started.
local WORKER = [==[
local duplex = require "duplex"
local core = require "duplex.core"
local dir = assert(os.getenv("TEST_DIR"))
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
local OPTS = OPTS_HERE
local maxclients = OPTS.maxclients
OPTS.maxclients = nil
local function main(id, servers)
  local gen = os.getenv("DUPLEX_CLUSTER_GEN")
  local v = version()
  event("start", id, gen, core.proc_getpid())
  if os.getenv("TEST_CRASH") then error("crash at start") end
  local _, port = servers[1]:getsockname()
  event("ready", id, gen, core.proc_getpid(), port)
  servers[1]:serve(function(c)
    local line = c:read("l")
    if line == "peer" then                     -- who the PROXY header says it is
      local host, port = c:getpeername()
      c:write(host, " ", port, "\n")
      return
    end
    if line == "slow" then
      event("working", id, gen)
      duplex.sleep(0.3)
    end
    c:write(id, " ", gen, " ", v, "\n")
    if line == "hold" then c:read("a") end
  end, { maxclients = maxclients })
end
assert(duplex.cluster(OPTS, main))
event("master-exit")
]==]

-- Start a cluster program with opts (Lua source of a table): returns the
-- process and its directory. Stopped and removed when the test ends
-- (helpers.defer: busted keeps only the last function given to `finally`).
local function start_cluster(opts_src, env)
  local dir = helpers.mktemp_dir("cluster")
  helpers.spit(dir .. "/app.lua", (WORKER:gsub("OPTS_HERE", function() return opts_src end)))
  helpers.spit(dir .. "/version", "v1\n")
  local vars = "TEST_DIR=" .. q(dir)
  for k, v in pairs(env or {}) do vars = vars .. " " .. k .. "=" .. q(v) end
  local proc = helpers.spawn_process(("env %s %s %s 2>%s"):format(
    vars, helpers.lua, q(dir .. "/app.lua"), q(dir .. "/err")))
  helpers.defer(function()
    proc:close()
    helpers.execute("rm -rf " .. q(dir))
  end)
  return proc, dir
end

local function ready_ids(dir, gen)
  local ids, port = {}, nil
  for _, e in ipairs(events(dir)) do
    if e[1] == "ready" and (gen == nil or e[3] == gen) then ids[e[2]] = e[4]; port = e[5] end
  end
  return ids, port
end

local function kill(pid, sig)
  assert(helpers.execute(("kill -%s %d"):format(sig, pid)))
end

-- SIGSTOP and SIGCONT for a test: the first pause defers the continuing
-- of every process it stopped, which then runs before the cleanups
-- deferred earlier (start_cluster's: a stopped worker would hold the
-- master's stdout, and proc:close, for ever).
local function pauser()
  local stopped
  local function pause(pid)
    if not stopped then
      stopped = {}
      helpers.defer(function()
        for p in pairs(stopped) do helpers.execute(("kill -CONT %d 2>/dev/null"):format(p)) end
      end)
    end
    stopped[pid] = true
    kill(pid, "STOP")
  end
  return pause, function(pid) kill(pid, "CONT"); stopped[pid] = nil end
end

describe("listen on an inherited descriptor", function()
  after_each(helpers.run_cleanups)
  -- A python3 supervisor makes the descriptors and execs the Lua child
  -- (through sh and env, which exec too: the pid stays).
  local function supervise(py, lua_body, env)
    local dir = helpers.mktemp_dir("inherit")
    helpers.defer(function() helpers.execute("rm -rf " .. q(dir)) end)
    helpers.spit(dir .. "/child.lua", [==[
local duplex = require "duplex"
-- O_NONBLOCK (04000) and O_CLOEXEC (02000000) of fd, as 0/1, or nil
local function fdinfo(fd)
  local f = io.open("/proc/self/fdinfo/" .. fd)
  local flags = f and f:read("*a"):match("flags:%s*(%d+)")
  if f then f:close() end
  if not flags then return nil end
  flags = tonumber(flags, 8)
  return math.floor(flags / 2048) % 2 .. " " .. math.floor(flags / 524288) % 2
end
local function show(...)
  local t = { ... }
  for i = 1, select("#", ...) do t[i] = tostring(t[i]) end
  io.write(table.concat(t, "|", 1, select("#", ...)), "\n")
end
]==] .. lua_body)
    helpers.spit(dir .. "/sup.py", py)
    local out = helpers.readall(("cd %s && env %s python3 %s %s 2>&1"):format(
      q(os.getenv("PWD") or "."), env or "", q(dir .. "/sup.py"),
      q("exec " .. helpers.lua .. " " .. dir .. "/child.lua")))
    return out
  end

  it("fd:N adopts a listening socket (non-blocking, close-on-exec) and refuses the rest, whole", function()
    if not python3() then pending("needs python3") return end
    local out = supervise([==[
import os, socket, sys
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(8)
bound = socket.socket(); bound.bind(("127.0.0.1", 0))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
f = open(sys.argv[0], "rb")
for s in (lst, bound, udp): os.set_inheritable(s.fileno(), True)
os.set_inheritable(f.fileno(), True)
closed = 1000
try: os.close(closed)
except OSError: pass
os.environ["FDS"] = "%d %d %d %d %d %d" % (lst.fileno(), bound.fileno(), udp.fileno(), f.fileno(), closed, lst.getsockname()[1])
os.execvp("sh", ["sh", "-c", sys.argv[1]])
]==], [==[
local lst, bound, udp, file, closed, port = os.getenv("FDS"):match("(%d+) (%d+) (%d+) (%d+) (%d+) (%d+)")
print("before", fdinfo(lst))
local srv = assert(duplex.listen("fd:" .. lst))
print("after", fdinfo(lst))
local host, p = srv:getsockname()
print("addr", host, p == tonumber(port))
local answer = duplex.run(function()
  duplex.spawn(function() local c = srv:accept(); c:write(c:read("l"), "!\n"); c:close() end)
  local c = assert(duplex.connect("127.0.0.1", p))
  c:write("hi\n")
  return c:read("l")
end)
print("answer", answer)
show(duplex.listen("fd:" .. bound))
show(duplex.listen("fd:" .. udp))
show(duplex.listen("fd:" .. file))
show(duplex.listen("fd:" .. closed))
show(pcall(duplex.listen, "fd:three"))
srv:close()
print("closed", fdinfo(lst))
]==])
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(10, #lines, out)
    assert.equal("before\t0 0", lines[1])               -- inherited: blocking, kept on exec
    assert.equal("after\t1 1", lines[2])                -- adopted: O_NONBLOCK, FD_CLOEXEC
    assert.equal("addr\t127.0.0.1\ttrue", lines[3])
    assert.equal("answer\thi!", lines[4])
    local nl = "^nil|listen fd:(%d+): descriptor (%d+) is not a listening stream socket|EINVAL$"
    assert.matches(nl, lines[5])                        -- bound, not listening
    assert.matches(nl, lines[6])                        -- a datagram socket
    assert.matches("^nil|listen fd:%d+: Socket operation on non%-socket|ENOTSOCK$", lines[7])
    assert.matches("^nil|listen fd:%d+: Bad file descriptor|EBADF$", lines[8])
    assert.matches("^false|bad argument #1 to '[%w.]*listen' %('fd:' wants a descriptor number%)$", lines[9])
    assert.equal("closed\tnil", lines[10])            -- the server owned it
  end)

  it("systemd and systemd:NAME take LISTEN_FDS for this pid; another pid's or a missing name is nil, msg, ENOENT", function()
    if not python3() then pending("needs python3") return end
    local py = [==[
import os, socket, sys
a = socket.socket(); a.bind(("127.0.0.1", 0)); a.listen(8)
b = socket.socket(); b.bind(("127.0.0.1", 0)); b.listen(8)
# the ports first: when fd 3 was taken already (busted under valgrind
# passes one on), a is 4, and the dup2 onto 4 below makes a.fileno() b's
os.environ["PORTS"] = "%d %d" % (a.getsockname()[1], b.getsockname()[1])
b4 = os.dup(b.fileno()); os.dup2(a.fileno(), 3); os.dup2(b4, 4)
os.set_inheritable(3, True); os.set_inheritable(4, True)
os.environ["LISTEN_FDS"] = "2"
os.environ["LISTEN_FDNAMES"] = "web:admin"
os.environ["LISTEN_PID"] = os.environ.get("FAKE_PID") or str(os.getpid())
os.execvp("sh", ["sh", "-c", sys.argv[1]])
]==]
    local body = [==[
local pa, pb = os.getenv("PORTS"):match("(%d+) (%d+)")
local function port(s) if not s then return s end return select(2, s:getsockname()) == tonumber(pa) and "a" or "b" end
local s1, m1, c1 = duplex.listen("systemd")
local s2, m2, c2 = duplex.listen("systemd:admin")
local s3, m3, c3 = duplex.listen("systemd:web")
print(port(s1), m1, c1)
print(port(s2), m2, c2)
print(port(s3), m3, c3)
show(duplex.listen("systemd:nope"))
]==]
    assert.equal(table.concat({
      "a\tnil\tnil", "b\tnil\tnil", "a\tnil\tnil",
      "nil|listen systemd:nope: systemd passed no descriptor named 'nope' (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES)|ENOENT",
    }, "\n") .. "\n", supervise(py, body))
    assert.equal(table.concat({
      "nil\tlisten systemd: systemd passed no descriptor to this process (LISTEN_PID, LISTEN_FDS)\tENOENT",
      "nil\tlisten systemd:admin: systemd passed no descriptor named 'admin' (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES)\tENOENT",
      "nil\tlisten systemd:web: systemd passed no descriptor named 'web' (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES)\tENOENT",
      "nil|listen systemd:nope: systemd passed no descriptor named 'nope' (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES)|ENOENT",
    }, "\n") .. "\n", supervise(py, body, "FAKE_PID=1"))
  end)
end)

describe("duplex.cluster", function()
  after_each(helpers.run_cleanups)
  it("raises for a wrong argument, naming it", function()
    assert.error_matches(function() duplex.cluster({ workerz = 2 }, print) end,
      "bad argument #1 to 'cluster' %(unknown option 'workerz'%)")
    assert.error_matches(function() duplex.cluster({}, nil) end,
      "bad argument #2 to 'cluster' %(function expected, got nil%)")
    assert.error_matches(function() duplex.cluster({ workers = 0 }, print) end,
      "option 'workers' must be a positive integer")
    assert.error_matches(function()
      duplex.cluster({ reuseport = true, listen = { "unix:/tmp/x" } }, print)
    end, "reuseport is for TCP")
    if duplex.tls then
      assert.error_matches(function() duplex.tls.context({ ticket_key = "short" }) end,
        "option 'ticket_key' must be a string of 80 bytes")
    end
  end)

  it("two workers share one inherited listener: both answer on it", function()
    local proc, dir = start_cluster([[{ workers = 2, listen = { "127.0.0.1", 0 }, maxclients = 1 }]])
    poll(function() local t = ready_ids(dir); return t[1] and t[2] end, 10, "two workers ready")
    local ids, port = ready_ids(dir)
    -- maxclients 1: while one worker holds a connection, the next one is the other's
    local a = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
    a:settimeout(5)
    assert(a:write("hold\n"))
    local ra = assert(a:read("l"))
    local b = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
    b:settimeout(5)
    assert(b:write("hold\n"))
    local rb = assert(b:read("l"))
    a:close(); b:close()
    local wa, wb = ra:match("^(%d)"), rb:match("^(%d)")
    assert.same({ "1", "2" }, { math.min(wa, wb) .. "", math.max(wa, wb) .. "" })
    assert.truthy(ids[1] ~= ids[2])
    kill(proc.pid, "TERM")
    assert.same({ true, "exit", 0 }, { proc:wait(15) })
    assert.equal(1, count(dir, "master-exit"))
  end)

  it("a listener's PROXY options reach the workers that inherit it", function()
    local proc, dir = start_cluster([[{ workers = 2, listen = { "127.0.0.1", 0, { proxy = true } } }]])
    poll(function() local t = ready_ids(dir); return t[1] and t[2] end, 10, "two workers ready")
    local _, port = ready_ids(dir)
    for _ = 1, 2 do
      local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
      c:settimeout(5)
      assert(c:write("PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\npeer\n"))
      assert.same({ "203.0.113.9 5555" }, { c:read("l") })
      c:close()
    end
    local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
    c:settimeout(5)
    assert(c:write("peer\n"))                    -- no header: refused, never answered
    assert.same({ "" }, { c:read("a") })
    c:close()
    kill(proc.pid, "TERM")
    assert.same({ true, "exit", 0 }, { proc:wait(15) })
  end)

  it("a worker killed with -9 is restarted and the service goes on", function()
    local proc, dir = start_cluster([[{ workers = 2, listen = { "127.0.0.1", 0 } }]])
    poll(function() local t = ready_ids(dir); return t[1] and t[2] end, 10, "two workers ready")
    local ids, port = ready_ids(dir)
    kill(ids[1], "KILL")
    poll(function() return count(dir, "ready", function(e) return e[2] == 1 end) == 2 end, 10,
      "worker 1 started again")
    local again = ready_ids(dir)
    assert.are_not.equal(ids[1], again[1])
    assert.equal(ids[2], again[2])
    for i = 1, 10 do assert.matches("^%d 1 v1$", assert(ask(port, "hi" .. i))) end
    assert.matches("worker 1 %(pid " .. ids[1] .. "%) ended %(signal KILL%) after [%d.]+ s; restarting in 0.1 s",
      helpers.slurp(dir .. "/err"))
    kill(proc.pid, "TERM")
    assert.same({ true, "exit", 0 }, { proc:wait(15) })
  end)

  it("SIGTERM: the request in flight is answered, then the master exits 0", function()
    local proc, dir = start_cluster([[{ workers = 2, listen = { "127.0.0.1", 0 }, grace = 5 }]])
    poll(function() local t = ready_ids(dir); return t[1] and t[2] end, 10, "two workers ready")
    local _, port = ready_ids(dir)
    local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
    c:settimeout(5)
    assert(c:write("slow\n"))
    poll(function() return count(dir, "working") == 1 end, 5, "the request in flight")
    kill(proc.pid, "TERM")
    assert.matches("^%d 1 v1$", assert(c:read("l")))
    c:close()
    assert.same({ true, "exit", 0 }, { proc:wait(15) })
    local r, _, code = ask(port, "late", 1)
    assert.is_nil(r)
    assert.equal("ECONNREFUSED", code)
    assert.matches("TERM: stopping 2 workers %(grace 5 s%)", helpers.slurp(dir .. "/err"))
  end)

  it("SIGHUP reloads the code on disk: no request fails, the new generation answers", function()
    local proc, dir = start_cluster([[{ workers = 2, listen = { "127.0.0.1", 0 }, grace = 5 }]])
    poll(function() local t = ready_ids(dir); return t[1] and t[2] end, 10, "two workers ready")
    local _, port = ready_ids(dir)
    local failures, answers, versions = {}, 0, {}
    duplex.run(function()
      local stop = false
      local clients = {}
      for i = 1, 4 do
        clients[i] = duplex.spawn(function()
          while not stop do
            local r, msg = ask(port, i == 1 and "slow" or "fast")
            if r then
              answers = answers + 1
              versions[r:match("(v%d)$")] = true
            else failures[#failures + 1] = msg end
          end
        end)
      end
      poll(function() return answers >= 20 end, 10, "steady answers")
      helpers.spit(dir .. "/version", "v2\n")
      kill(proc.pid, "HUP")
      poll(function() local t = ready_ids(dir, 2); return t[1] and t[2] end, 10, "generation 2 ready")
      -- the old generation drains and ends
      for _, pid in pairs(ready_ids(dir, 1)) do
        poll(function() return not helpers.slurp("/proc/" .. pid .. "/stat") end, 10, "old worker gone")
      end
      local seen = answers
      poll(function() return answers >= seen + 20 end, 10, "answers after the reload")
      stop = true
      for _, t in ipairs(clients) do t:join() end
    end)
    assert.same({}, failures)
    assert.is_true(versions.v1)
    assert.is_true(versions.v2)
    for i = 1, 10 do assert.matches("^%d 2 v2$", assert(ask(port, "after" .. i))) end
    kill(proc.pid, "TERM")
    assert.same({ true, "exit", 0 }, { proc:wait(15) })
  end)

  it("a worker that crashes at start is restarted with back-off, reported, never in a tight loop", function()
    local t0 = duplex.now()
    local proc, dir = start_cluster([[{ workers = 1, listen = { "127.0.0.1", 0 } }]], { TEST_CRASH = "1" })
    poll(function() return (helpers.slurp(dir .. "/err") or ""):find("keeps dying") end, 15, "the report")
    local elapsed = duplex.now() - t0
    local starts = count(dir, "start")
    -- back-off 0.1, 0.2, 0.4, 0.8 s: five starts take 1.5 s at least
    assert.is_true(elapsed >= 1.5, "elapsed " .. elapsed)
    assert.is_true(starts >= 5 and starts <= 6, "starts " .. starts)
    local err = helpers.slurp(dir .. "/err")
    assert.matches("worker 1: main failed: .*crash at start", err)
    assert.matches("worker 1 keeps dying %(5 times in a row%): restarting every 5 s at most", err)
    kill(proc.pid, "TERM")
    assert.same({ true, "exit", 0 }, { proc:wait(15) })
  end)

  it("one inherited listener: a hung worker's share is taken by the other", function()
    local pause, resume = pauser()
    local proc, dir = start_cluster([[{ workers = 2, listen = { "127.0.0.1", 0 } }]])
    poll(function() local t = ready_ids(dir); return t[1] and t[2] end, 10, "two workers ready")
    local ids, port = ready_ids(dir)
    pause(ids[1])
    for i = 1, 20 do assert.matches("^2 1 v1$", assert(ask(port, "hi" .. i))) end
    resume(ids[1])
    kill(proc.pid, "TERM")
    assert.same({ true, "exit", 0 }, { proc:wait(15) })
  end)

  it("examples/cluster.lua serves HTTP from two workers and ends 0 on TERM", function()
    local dir = helpers.mktemp_dir("cluster-example")
    -- (timeout bounds the reads below; it passes TERM on and exits with its child's status)
    local proc = helpers.spawn_process(("timeout -k 2 40 %s examples/cluster.lua 127.0.0.1 0 2 2>%s"):format(
      helpers.lua, q(dir .. "/err")))
    helpers.defer(function()
      proc:close()
      helpers.execute("rm -rf " .. q(dir))
    end)
    local port
    for _ = 1, 2 do
      local id, p = assert(proc:read("l")):match("^worker (%d) listening 127%.0%.0%.1 (%d+)$")
      assert.truthy(id)
      port = tonumber(p)
    end
    local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
    c:settimeout(5)
    assert(c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    local head = assert(c:readuntil("\r\n\r\n"))
    assert.matches("^HTTP/1.1 200 OK\r\n", head)
    local len = tonumber(head:match("Content%-Length: (%d+)"))
    assert.matches("^Hello from worker [12]\n$", assert(c:read(len)))
    c:close()
    kill(proc.pid, "TERM")
    assert.same({ true, "exit", 0 }, { proc:wait(15) })
  end)

  it("TLS: a session made with one worker resumes on the other (one ticket key) #nomemcheck", function()
    if not (duplex.tls and helpers.execute("command -v openssl >/dev/null 2>&1")) then
      pending("needs TLS and the openssl CLI") return
    end
    local P = require("spec.tls_pki").get()
    local pause, resume = pauser()
    local proc, dir = start_cluster(([[{ workers = 2, listen = { "127.0.0.1", 0,
      { tls = { certificate = %q, key = %q } } } }]]):format(P.server.crt, P.server.key))
    poll(function() local t = ready_ids(dir); return t[1] and t[2] end, 10, "two workers ready")
    local ids, port = ready_ids(dir)
    local sess = dir .. "/session"
    -- s_client with one line: the worker's answer is "<id> <gen> <version>"
    local function s_client(version, sess_flag)
      local out = helpers.readall(("echo hi | timeout 20 openssl s_client -connect 127.0.0.1:%d %s %s %s -ign_eof 2>&1")
        :format(port, version, sess_flag, q(sess)))
      return out:match("\n(%d) 1 v1\n"), out:match("\n(Reused), TLS") or out:match("\n(New), TLS"), out
    end
    for _, version in ipairs({ "-tls1_2", "-tls1_3" }) do
      pause(ids[2])                        -- worker 1 makes the session
      local id, how, out = s_client(version, "-sess_out")
      assert.equal("1", id, out)
      assert.equal("New", how, out)
      resume(ids[2])
      pause(ids[1])                        -- worker 2 resumes it
      id, how, out = s_client(version, "-sess_in")
      assert.equal("2", id, out)
      assert.equal("Reused", how, out)
      resume(ids[1])
    end
    kill(proc.pid, "TERM")
    assert.same({ true, "exit", 0 }, { proc:wait(15) })
  end)

  it("reuseport: every worker listens on the port itself; both answer", function()
    local proc, dir = start_cluster([[{ workers = 2, listen = { "127.0.0.1", 0 }, reuseport = true }]])
    poll(function() local t = ready_ids(dir); return t[1] and t[2] end, 10, "two workers ready")
    local _, port = ready_ids(dir)
    local seen = {}
    for i = 1, 40 do seen[assert(ask(port, "hi" .. i)):match("^(%d)")] = true end
    assert.same({ ["1"] = true, ["2"] = true }, seen)
    kill(proc.pid, "INT")                  -- ^C: as TERM
    assert.same({ true, "exit", 0 }, { proc:wait(15) })
    assert.matches("INT: stopping 2 workers", helpers.slurp(dir .. "/err"))
  end)

  it("workers whose master was killed (-9) drain and end by themselves", function()
    local proc, dir = start_cluster([[{ workers = 2, listen = { "127.0.0.1", 0 } }]])
    poll(function() local t = ready_ids(dir); return t[1] and t[2] end, 10, "two workers ready")
    local ids = ready_ids(dir)
    kill(proc.pid, "KILL")
    assert.same({ nil, "signal", 9 }, { proc:wait(15) })
    for _, pid in pairs(ids) do
      poll(function() return not helpers.slurp("/proc/" .. pid .. "/stat") end, 10, "worker gone")
    end
  end)
end)
