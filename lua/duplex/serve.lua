-- duplex.serve: server:serve(handler [, opts]), server:close([grace]) and
-- client:lines(). The policy a server needs to run unattended: a task per
-- connection, a limit on connections (the rest wait in the listen queue),
-- an idle timeout on every client, a graceful drain when the server closes,
-- quiet ends for clients that go away, and one report per episode of
-- running out of descriptors, memory or epoll watches. Returns { serve,
-- close, lines }, which init.lua puts into the core's method tables.

local core = require "duplex.core"
local auxlib = require "duplex.auxlib"
local sched = require "duplex.sched"
local sync = require "duplex.sync"

local client, server = core.client_methods, core.server_methods
local go_guarded, guarded = core.go_guarded, core.guarded
local current, now = core.current, core.now
local idle_client = core.idle
local proxy_wait, proxy_pending, PROXY_LATER = core.proxy_wait, core.proxy_pending, core.proxy_later
local typename, argerror, checktype, checktimeout, isinteger =
  auxlib.typename, auxlib.argerror, auxlib.checktype, auxlib.checktimeout, auxlib.isinteger
local run, report, cond = sched.run, sched.report, sync.cond

local M = { core = core }

-- Raise like luaL_checkudata would for a method's self (open or closed:
-- a closed socket is an I/O failure, found by the I/O itself).
local function check_self(self, want, method)
  local kind = core.type(self)
  if kind == want or kind == "closed " .. want then return end
  argerror(1, method, "duplex." .. want .. " expected, got " .. typename(self), 3)
end

-- What lines() raises for a failed read: the read's message, code and
-- (when the stream broke) the bytes it had received, for a handler to
-- act on; tostring gives the message after where the loop was, as
-- error(msg, 2) would.
local Failure = { __name = "duplex.failure" }
Failure.__index = Failure
function Failure:__tostring() return self.where .. self.msg end

local function where(level)
  local info = debug.getinfo(level + 1, "Sl")
  if not info or info.currentline <= 0 then return "" end
  return info.short_src .. ":" .. info.currentline .. ": "
end

-- The last failure lines() raised for each client: a handler that ends
-- with it ends quietly (the client went away or timed out), not as a bug.
local quiet = setmetatable({}, { __mode = "k" })

local function from_lines(c, e)
  return quiet[c] ~= nil and rawequal(quiet[c], e)
end

--- client:lines([fmt]): iterate over reads of fmt (default "l"); raises
--- on I/O errors a table { msg = , code = , partial = } (tostring:
--- "where: msg").
function M.lines(self, fmt)
  check_self(self, "client", "lines")
  fmt = fmt or "l"
  local read = client.read
  return function()
    local v, msg, code, partial = read(self, fmt)
    if v == nil and msg then
      local e = setmetatable({ msg = msg, code = code, partial = partial, where = where(2) },
        Failure)
      quiet[self] = e
      error(e)
    end
    return v
  end
end

-- The serve running on each server, for close(grace).
local serving = setmetatable({}, { __mode = "k" })

local c_close = server.close      -- the core's, which M.close wraps

--- server:close([grace]): stop accepting at once. With grace seconds, the
--- serve running on the server ends its connections that wait between
--- requests at once (a handler waits to read, nothing is buffered, and it
--- has read nothing since it last wrote), waits up to grace for the others
--- to end (closing each as it goes idle), then ends the handlers still
--- running (cancelled: their clients close), and only then returns.
function M.close(self, grace)
  if core.type(self) == "closed server" then return true end   -- idempotent
  check_self(self, "server", "close")
  checktimeout(grace, 1, "close")
  local st = serving[self]
  if st and not st.closing then
    st.closing = true
    st.grace = grace
    st.changed:broadcast()
  end
  return c_close(self)
end

local serve_opts = { maxclients = true, idletimeout = true, nodelay = true }

local function check_opts(opts)
  if opts == nil then return end
  if type(opts) ~= "table" then
    argerror(2, "serve", "table expected, got " .. typename(opts), 3)
  end
  for k in pairs(opts) do
    if not serve_opts[k] then
      argerror(2, "serve", string.format("unknown option '%s'", tostring(k)), 3)
    end
  end
  local m = opts.maxclients
  if m ~= nil and (not isinteger(m) or m < 1) then
    argerror(2, "serve", "option 'maxclients' must be a positive integer", 3)
  end
  local t = opts.idletimeout
  if t ~= nil and t ~= false and not (type(t) == "number" and t > 0) then
    argerror(2, "serve", "option 'idletimeout' must be a positive number or false", 3)
  end
  if opts.nodelay ~= nil and type(opts.nodelay) ~= "boolean" then
    argerror(2, "serve", "option 'nodelay' must be a boolean", 3)
  end
end

-- One connection: its handler is the body of a task of its own (no
-- wrapper frame stays below it: memory of idle connections); the task
-- closes the client however it ends and then calls st.ended. A TLS
-- client first completes its handshake, then the handler is a tail call.
local function tls_one(st, handler, c)
  local ok, msg = c:handshake(st.handshake_timeout)
  if not ok then                  -- never call the handler unauthenticated
    report(msg)                   -- one line, no traceback
    return
  end
  return handler(c)
end

-- A client of a listener with the proxy option: its PROXY header first,
-- read here in its own task (a slow proxy holds up no other accept), then
-- TLS, then the handler. A peer outside proxy_from, a header that is not
-- one or that does not come in time: reported in one line, and closed.
local function proxy_one(st, handler, c)
  local ok, msg = proxy_wait(c)
  if not ok then
    report(msg)
    return
  end
  if st.handshake_timeout then return tls_one(st, handler, c) end
  return handler(c)
end

-- serve's only wait: for a connection to end (or close), at most t seconds.
local function wait_change(st, t)
  st.waiting = true
  st.changed:wait(t)
  st.waiting = false
end

-- A connection's task ended (not when cancelled): count it out (waking
-- serve if it waits for that), and report an error unless the client
-- went away or serve ended it.
local function ender(st)
  return function(c, ok, err, traceback)
    st.active = st.active - 1
    if st.waiting then st.changed:broadcast() end
    if not ok and not from_lines(c, err) then report(err, traceback) end
  end
end

-- Running out of descriptors, memory or epoll watches (ENOSPC: the
-- listener cannot be registered to wait) is an episode: reported when it
-- starts and when it ends, with a count, while serve backs off.
local scarce = { EMFILE = true, ENFILE = true, ENOBUFS = true, ENOMEM = true, ENOSPC = true }
-- seconds: a back-off step, a wait for the queue in an episode, a drain step
local STEP = 0.05

--- server:serve(handler [, opts]): accept connections until the server is
--- closed, each handled by handler(client) in a task of its own. opts:
--- maxclients, idletimeout, nodelay. Returns true. Outside duplex.run it
--- runs one.
function M.serve(self, handler, opts)
  check_self(self, "server", "serve")
  checktype(handler, "function", 1, "serve")   -- #1 as in srv:serve(handler)
  check_opts(opts)
  if core.type(self) == "closed server" then   -- accept says it, with the address
    local _, msg, code = server.accept(self, 0)
    return nil, (msg:gsub("^accept", "serve")), code
  end
  if not current() then return run(M.serve, self, handler, opts) end
  opts = opts or {}
  if opts.nodelay ~= nil then self:setoption("nodelay", opts.nodelay) end
  local st = { active = 0, waiting = false,
               changed = cond(), handshake_timeout = self:getoption("handshake_timeout") }
  st.ended = ender(st)              -- one per serve, not per connection
  serving[self] = st
  local accept, max, idle = server.accept, opts.maxclients, opts.idletimeout
  local episode
  while core.type(self) == "server" do   -- until closed, also during a back-off
    if max and st.active >= max then
      wait_change(st, 1)                  -- a connection ends, or close
    else
      -- in an episode, wait only briefly: the queue found empty for that
      -- long ends the episode (a wait that works: the listener is registered)
      local c, msg, code = accept(self, episode and STEP or math.huge, PROXY_LATER)
      if c then
        st.active = st.active + 1         -- counted now, for maxclients
        if idle then c:setoption("idletimeout", idle) end
        if proxy_pending(c) then go_guarded(st.ended, c, proxy_one, st, handler, c)
        elseif st.handshake_timeout then go_guarded(st.ended, c, tls_one, st, handler, c)
        else go_guarded(st.ended, c, handler, c) end
      elseif episode and code == "ETIMEDOUT" then
        report(string.format("%s; accepting again after %d failures in %.1f s",
          episode.msg, episode.count, now() - episode.since))
        episode = nil
      elseif code ~= "ECANCELED" then
        if not scarce[code] then
          report(msg, debug.traceback())
        elseif not episode then
          episode = { msg = msg, count = 1, since = now() }
          report(msg .. "; backing off until connections end")
        else
          episode.count = episode.count + 1
        end
        wait_change(st, STEP)             -- let connections end meanwhile
      end
    end
  end
  if st.grace then                        -- drain, then end the stragglers
    local deadline = now() + st.grace
    -- Idle connections are ended from one STEP on, not at once: a client
    -- that was just accepted, or just answered, sends its request within
    -- that time, and a handler that answers "Connection: close" once its
    -- server is closed then ends it without a race (a reload under load).
    local sweep_from = math.min(now() + STEP, deadline)
    repeat
      if now() >= sweep_from then
        for _, c in ipairs(guarded(st.ended)) do   -- between requests: end it now
          if idle_client(c) then c:close() end
        end
      end
      if st.active == 0 then break end
      wait_change(st, math.min(STEP, math.max(0, deadline - now())))
    until now() >= deadline
    local _, tasks = guarded(st.ended)    -- the grace is over: they end,
    for _, id in ipairs(tasks) do core.cancel(id) end   -- closing their clients
  end
  serving[self] = nil
  return true
end

return M
