-- duplex.cluster(opts, main): main(id, servers) in `workers` processes,
-- each in a duplex.run of its own (issue 20).
--
-- Workers are started by exec of the same program (the interpreter and
-- the script of `arg`, with their arguments), never by forking a running
-- loop: each starts clean and a reload runs the code now on disk. The
-- program finds duplex.cluster again; there the environment
-- (DUPLEX_WORKER_ID and the rest, below) says it is a worker, and cluster
-- calls main instead. The first process, the master, makes the listeners
-- (or, with reuseport, only chooses the ports), starts the workers and
-- handles the signals: nothing in a worker need know of them.
--
-- Master and worker talk over a socket pair (DUPLEX_CLUSTER_CTL): the
-- master first writes "key HEX", the session ticket key of every worker's
-- TLS contexts (a secret: not in the environment, which children inherit
-- and /proc shows); the worker writes "ready" once main has run up to its
-- first wait; the
-- master writes "stop", upon which the worker closes its servers with
-- opts.grace and ends. The end of that stream (the master died) stops the
-- worker too, so no worker outlives its master. Workers run in a process
-- group of their own: a terminal's ^C reaches the master alone, which
-- then stops them in order. A worker also takes SIGTERM as "stop", for
-- supervisors that signal every process of a service.
--
-- Listeners: by default the master listens and every worker inherits the
-- same listener (DUPLEX_CLUSTER_FDS, adopted as listen("fd:N")); the
-- listen queue stays open as long as the master lives, so a reload or a
-- restart refuses nothing, and a worker that hangs leaves its share to the
-- others. With opts.reuseport each worker listens on the port itself
-- (SO_REUSEPORT): the kernel spreads connections evenly, but a hung
-- worker keeps its share, and the connections queued on a worker that
-- stops are reset (README: when to choose which).

local core     -- the duplex.core of the duplex that calls (set below)

local env_id, env_ctl = "DUPLEX_WORKER_ID", "DUPLEX_CLUSTER_CTL"
local env_fds, env_ports = "DUPLEX_CLUSTER_FDS", "DUPLEX_CLUSTER_PORTS"
local env_master, env_gen = "DUPLEX_CLUSTER_MASTER", "DUPLEX_CLUSTER_GEN"

local BACKOFF_MIN, BACKOFF_MAX = 0.1, 5   -- seconds before a restart
local STEADY = 10      -- a worker that lived this long starts the back-off again
local KEEPS_DYING = 5  -- quick deaths in a row that are reported as such
local KILL_AFTER = 5   -- seconds after the grace before a stopped worker is killed

local puc51 = _VERSION == "Lua 5.1" and rawget(_G, "jit") == nil

local OPTIONS = { workers = true, listen = true, reuseport = true, grace = true,
                  argv = true, log = true }

local function argerror(n, msg)
  error(("bad argument #%d to 'cluster' (%s)"):format(n, msg), 3)
end

local function check(opts, main)
  if type(opts) ~= "table" then argerror(1, "table expected, got " .. type(opts)) end
  if type(main) ~= "function" then argerror(2, "function expected, got " .. type(main)) end
  for k in pairs(opts) do
    if not OPTIONS[k] then argerror(1, ("unknown option '%s'"):format(tostring(k))) end
  end
  local w = opts.workers
  if w ~= nil and (type(w) ~= "number" or w < 1 or w % 1 ~= 0) then
    argerror(1, "option 'workers' must be a positive integer")
  end
  local g = opts.grace
  if g ~= nil and (type(g) ~= "number" or g < 0) then
    argerror(1, "option 'grace' must be a non-negative number")
  end
  local l = opts.listen
  if l ~= nil and type(l) ~= "table" then argerror(1, "option 'listen' must be a table") end
  if l and l[1] ~= nil and type(l[1]) ~= "table" then l = { l } end   -- one {host, port, opts}
  for i, spec in ipairs(l or {}) do
    if type(spec) ~= "table" or type(spec[1]) ~= "string" then
      argerror(1, ("listen[%d] must be { host, port [, opts] }"):format(i))
    end
    if opts.reuseport and spec[1]:sub(1, 5) == "unix:" then
      argerror(1, ("listen[%d]: reuseport is for TCP, not %s"):format(i, spec[1]))
    end
  end
  if opts.argv ~= nil and type(opts.argv) ~= "table" then argerror(1, "option 'argv' must be a table") end
  if opts.log ~= nil and type(opts.log) ~= "function" then argerror(1, "option 'log' must be a function") end
  return l or {}
end

-- The listen options without what a worker does itself (TLS: contexts are
-- made in each worker) and with what the way of sharing needs.
local function master_opts(o, reuseport)
  local m = {}
  for k, v in pairs(o or {}) do
    if k ~= "tls" and k ~= "handshake_timeout" then m[k] = v end
  end
  if reuseport then m.reuseport = true end
  return m
end

-- A worker's: TLS given as a table of options gets the master's session
-- ticket key, so that a session made with one worker resumes on any other
-- (and across reloads).
local function worker_opts(o, reuseport, ticket_key)
  local w = {}
  for k, v in pairs(o or {}) do w[k] = v end
  if reuseport then w.reuseport = true end
  if type(w.tls) == "table" and w.tls.ticket_key == nil and ticket_key then
    local t = {}
    for k, v in pairs(w.tls) do t[k] = v end
    t.ticket_key = ticket_key
    w.tls = t
  end
  return w
end

local function tohex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function fromhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- The command line that started this program: interpreter, its options,
-- script, arguments.
local function program()
  local a = rawget(_G, "arg")
  if type(a) ~= "table" or a[0] == nil then
    error("duplex.cluster: no `arg` to start the workers with (give opts.argv)", 3)
  end
  local lo = 0
  while a[lo - 1] ~= nil do lo = lo - 1 end
  local argv = {}
  for i = lo, #a do argv[#argv + 1] = tostring(a[i]) end
  return argv
end

local function split(s)
  local t = {}
  for v in (s or ""):gmatch("[^,]+") do t[#t + 1] = tonumber(v) end
  return t
end

-- In a worker ------------------------------------------------------------

local function run_worker(duplex, opts, main, specs)
  local id = tonumber(os.getenv(env_id))
  local ctlfd = tonumber(os.getenv(env_ctl))
  local fds, ports = split(os.getenv(env_fds)), split(os.getenv(env_ports))
  local grace = opts.grace or 5
  local function fail(msg)
    io.stderr:write(("duplex.cluster: worker %d: %s\n"):format(id, msg))
    io.stderr:flush()
    os.exit(1)
  end
  local function body()
    local servers = {}
    local ctl = assert(duplex.stream(ctlfd))
    local first = ctl:read("l")            -- "key HEX": the TLS session ticket key
    local ticket_key = first and first:match("^key (%x+)$")
    ticket_key = ticket_key and fromhex(ticket_key)
    if #(opts.reuseport and ports or fds) ~= #specs then
      fail(("this program listens on %d addresses, its master on %d: a reload cannot change them")
        :format(#specs, #(opts.reuseport and ports or fds)))
    end
    for i, spec in ipairs(specs) do
      local s, msg
      if opts.reuseport then
        s, msg = duplex.listen(spec[1], ports[i], worker_opts(spec[3], true, ticket_key))
      else
        s, msg = duplex.listen("fd:" .. fds[i], nil, worker_opts(spec[3], false, ticket_key))
      end
      if not s then fail(msg) end
      servers[i] = s
    end
    local main_task = duplex.spawn(function()
      local ok, err
      if puc51 then ok, err = duplex.pcall(main, id, servers)
      else ok, err = xpcall(main, debug.traceback, id, servers) end
      if not ok then fail("main failed: " .. tostring(err)) end
    end)
    local stopping = false
    local function stop()
      if stopping then return end
      stopping = true
      local t0 = duplex.now()
      local closers = {}
      for i, s in ipairs(servers) do
        closers[i] = duplex.spawn(function() s:close(grace) end)
      end
      for _, t in ipairs(closers) do t:join() end
      main_task:join(math.max(0, grace - (duplex.now() - t0)))
      io.stdout:flush()
      os.exit(0)
    end
    duplex.onsignal("TERM", stop)
    duplex.sleep(0)                       -- main runs up to its first wait
    ctl:write("ready\n")
    repeat local line = ctl:read("l") until line == "stop" or line == nil
    stop()
  end
  if core.current() then body() else duplex.run(body) end
  os.exit(0)
end

-- In the master --------------------------------------------------------------

local function run_master(duplex, opts, main, specs)
  local log = opts.log or function(msg)
    io.stderr:write("duplex.cluster: ", msg, "\n")
    io.stderr:flush()
  end
  local nworkers = opts.workers or core.proc_ncpu()
  local grace = opts.grace or 5
  local argv = opts.argv or program()
  local reuseport = opts.reuseport and true or false
  local listeners, fds, ports = {}, {}, {}

  local function close_listeners()
    for _, s in ipairs(listeners) do s:close() end
  end
  for i, spec in ipairs(specs) do
    local s, msg, code = duplex.listen(spec[1], spec[2], master_opts(spec[3], reuseport))
    if not s then
      close_listeners()
      return nil, msg, code
    end
    local _, port = s:getsockname()
    ports[i] = port or 0
    if reuseport then s:close()          -- it chose the port; the workers listen
    else
      listeners[i] = s
      fds[i] = s:fileno()
    end
  end

  -- one session ticket key for every worker of every generation
  local ticket_key
  do
    local f = io.open("/dev/urandom", "rb")
    local k = f and f:read(80)
    if f then f:close() end
    ticket_key = k and #k == 80 and tohex(k) or nil
  end
  local slots, procs = {}, {}             -- id -> slot; pid -> proc
  local gen, shutting, finished = 1, false, false
  local done = duplex.cond()

  local function live()
    for _ in pairs(procs) do return true end
    return false
  end

  local start
  local function stop_proc(p)
    if p.stopping then return end
    p.stopping = true
    p.ctl:write("stop\n")
    p.killer = duplex.spawn(function()
      duplex.sleep(grace + KILL_AFTER)
      log(("worker %d (pid %d) did not stop within %g s: killed"):format(p.id, p.pid, grace + KILL_AFTER))
      core.proc_kill(p.pid, "KILL")
    end)
  end

  local function schedule(slot)
    if slot.timer or shutting then return end
    local delay = slot.delay
    slot.timer = duplex.spawn(function()
      duplex.sleep(delay)
      slot.timer = nil
      if not shutting then start(slot) end
    end)
  end

  local function ready(p)
    p.ready = true
    local slot = slots[p.id]
    if slot.next == p then
      local old = slot.cur
      slot.cur, slot.next = p, nil
      if old then stop_proc(old) end
    end
  end

  local function exited(p, how, code)
    procs[p.pid] = nil
    if p.killer then p.killer:cancel() end
    local slot = slots[p.id]
    if not p.stopping and not shutting then
      local lived = duplex.now() - p.started
      if lived >= STEADY then slot.delay, slot.quick = BACKOFF_MIN, 0
      else slot.quick = slot.quick + 1 end
      local status = how == "exit" and ("status " .. code) or ("signal " .. code)
      log(("worker %d (pid %d) ended (%s) after %.2f s; restarting in %g s")
        :format(p.id, p.pid, status, lived, slot.delay))
      if slot.quick == KEEPS_DYING then
        log(("worker %d keeps dying (%d times in a row): restarting every %g s at most")
          :format(p.id, slot.quick, BACKOFF_MAX))
      end
      if slot.cur == p then
        slot.cur, slot.next = slot.next, nil      -- a new generation takes over
        if slot.cur == nil then schedule(slot) end
      elseif slot.next == p then                  -- a new one died before it was ready
        slot.next = nil
        schedule(slot)
      end
      slot.delay = math.min(slot.delay * 2, BACKOFF_MAX)
    else
      if slot.cur == p then slot.cur = nil end
      if slot.next == p then slot.next = nil end
    end
    if shutting and not live() then
      finished = true
      done:broadcast()
    end
  end

  local function reap()
    for pid, p in pairs(procs) do
      local how, code = core.proc_reap(pid)
      if how then exited(p, how, code) end
    end
  end

  function start(slot)
    local a, b = core.proc_socketpair()
    if not a then
      log("socketpair: " .. tostring(b))
      return schedule(slot)
    end
    local mine, theirs = assert(duplex.stream(a)), assert(duplex.stream(b))
    local keep = {}
    for i, fd in ipairs(fds) do keep[i] = fd end
    keep[#keep + 1] = b
    local pid, msg = core.proc_spawn(argv, {
      [env_id] = tostring(slot.id), [env_ctl] = tostring(b),
      [env_fds] = table.concat(fds, ","), [env_ports] = table.concat(ports, ","),
      [env_master] = tostring(core.proc_getpid()), [env_gen] = tostring(gen),
    }, keep)
    theirs:close()
    if not pid then
      mine:close()
      log(("worker %d: %s; retrying in %g s"):format(slot.id, msg, slot.delay))
      schedule(slot)
      slot.delay = math.min(slot.delay * 2, BACKOFF_MAX)
      return
    end
    mine:write("key ", ticket_key or "none", "\n")   -- (into the socket's buffer: no wait)
    local p = { pid = pid, id = slot.id, gen = gen, ctl = mine, started = duplex.now() }
    procs[pid] = p
    if slot.cur == nil then slot.cur = p
    else
      if slot.next then stop_proc(slot.next) end
      slot.next = p
    end
    duplex.spawn(function()
      local line = mine:read("l")
      if line == "ready" then ready(p) end
      repeat line = mine:read("l") until line == nil      -- until it ends
      mine:close()
      reap()
    end)
  end

  local function shutdown(name)
    if shutting then return end
    shutting = true
    log(("%s: stopping %s workers (grace %g s)"):format(name, nworkers, grace))
    for _, slot in ipairs(slots) do
      if slot.timer then slot.timer:cancel(); slot.timer = nil end
    end
    for _, p in pairs(procs) do stop_proc(p) end
    if not live() then
      finished = true
      done:broadcast()
    end
  end

  local function reload()
    if shutting then return end
    gen = gen + 1
    log(("HUP: starting generation %d"):format(gen))
    for _, slot in ipairs(slots) do
      if slot.timer then slot.timer:cancel(); slot.timer = nil end
      slot.delay, slot.quick = BACKOFF_MIN, 0
      start(slot)
    end
  end

  local function body()
    duplex.onsignal("CHLD", reap)
    duplex.onsignal("TERM", shutdown)
    duplex.onsignal("INT", shutdown)
    duplex.onsignal("HUP", reload)
    for id = 1, nworkers do
      slots[id] = { id = id, delay = BACKOFF_MIN, quick = 0 }
      start(slots[id])
    end
    while not finished do done:wait() end
    for _, name in ipairs({ "CHLD", "TERM", "INT", "HUP" }) do duplex.onsignal(name, nil) end
    close_listeners()
    return true
  end

  if core.current() then return body() end
  return duplex.run(body)
end

-- cluster(duplex, core, opts, main): init.lua passes its module and core.
return function(duplex, c, opts, main)
  core = c
  local specs = check(opts, main)
  local master = tonumber(os.getenv(env_master))
  if os.getenv(env_id) and master and master == core.proc_getppid() then
    return run_worker(duplex, opts, main, specs)
  end
  return run_master(duplex, opts, main, specs)
end
