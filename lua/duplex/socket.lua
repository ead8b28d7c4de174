-- duplex.socket: a table shaped like LuaSocket's C core (`socket.core`),
-- on duplex, so that LuaSocket's own Lua modules (socket.lua,
-- socket/http.lua, ltn12.lua, socket/smtp.lua, ...) and copas run on it
-- unchanged:
--
--   require "duplex.socket".install()     -- or: require "duplex.luasocket"
--   local http = require "socket.http"    -- LuaSocket's, on duplex
--
-- The objects are duplex.socket_tcp's and duplex.socket_udp's; here are
-- the module's functions: the constructors, connect, select (poll(2)
-- through core.poll: no descriptor ceiling, and inside a duplex task it
-- yields instead of blocking), sleep, gettime, dns, newtry, protect,
-- skip. Parses on Lua 5.1 to 5.4 and LuaJIT.

local duplex = require "duplex"
local core = require "duplex.core"
local aux = require "duplex.socket_aux"
local tcp = require "duplex.socket_tcp"
local udp = require "duplex.socket_udp"

local floor, type, tostring, tonumber = math.floor, type, tostring, tonumber
local select_, getmetatable, setmetatable, error = select, getmetatable, setmetatable, error
local pcall = duplex.pcall      -- a task may wait inside it on every Lua
local rawmt = debug.getmetatable

local socket = {
  _VERSION = "LuaSocket 3.0.0",              -- the LuaSocket it copies
  _DUPLEX = duplex._VERSION,
  _SETSIZE = core.fdlimit(),                 -- select's only limit: open descriptors
  _SOCKETINVALID = -1,
  _DATAGRAMSIZE = 65536,
}
aux.M = socket                                -- its _DEBUG adds the elapsed time

-- tcp{client}'s receive and send: their common cases in C (a line with
-- no prefix, one whole string, as copas calls them), the rest in
-- socket_tcp's Lua; on Lua 5.1 and LuaJIT (no C continuations) the Lua
-- ones alone.
do
  local mt = tcp.classes["tcp{client}"]
  mt.__index.receive = core.facereceiver(mt, mt.__index.receive, socket, aux.strings)
  mt.__index.send = core.facesender(mt, mt.__index.send, socket, aux.strings)
end

-- --- constructors ----------------------------------------------------------

function socket.tcp() return tcp.new(nil) end
function socket.tcp4() return tcp.new("inet") end
function socket.tcp6() return tcp.new("inet6") end
function socket.udp() return udp.new(nil) end
function socket.udp4() return udp.new("inet") end
function socket.udp6() return udp.new("inet6") end

local families = { unspec = false, inet = "inet", inet6 = "inet6" }

local function str(v, n, fname)
  if type(v) == "number" then return tostring(v) end
  if type(v) ~= "string" then
    error(("bad argument #%d to '%s' (string expected, got %s)"):format(n, fname,
      v == nil and "no value" or type(v)), 3)
  end
  return v
end

-- connect(address, port [, laddress [, lport [, family]]]) -> a client
function socket.connect(address, port, laddress, lport, family)
  address = str(address, 1, "connect")
  port = str(port, 2, "connect")
  local fam = families[family or "unspec"]
  if fam == nil then
    error("bad argument #5 to 'connect' (invalid option '" .. tostring(family) .. "')", 2)
  end
  local o = tcp.new(fam or nil)
  if laddress then
    local ok, e = o:bind(str(laddress, 3, "connect"), lport or 0)
    if not ok then o:close(); return nil, e end
  end
  local ok, e = o:connect(address, port)
  if not ok then o:close(); return nil, e end
  return o
end

-- --- select -------------------------------------------------------------------

local tcpkind, udpkind = {}, {}
for _, mt in pairs(tcp.classes) do tcpkind[mt] = true end
for _, mt in pairs(udp.classes) do udpkind[mt] = true end

-- An object's descriptor (-1: none), whether it has bytes buffered, and
-- its connect going on in a task: the face's own objects directly, any
-- other through its getfd and dirty methods, as LuaSocket asks them.
local function fdof(s)
  local mt = getmetatable(s)
  if tcpkind[mt] then return tcp.fd(s), tcp.dirty(s), s.pending end
  if udpkind[mt] then return udp.fd(s), false end
  local getfd, fd = s.getfd, -1
  if getfd ~= nil then
    local n = getfd(s)
    if type(n) == "number" and n >= 0 then fd = floor(n) end
  end
  local dirty = s.dirty
  return fd, dirty ~= nil and dirty(s) and true or false
end

local function checkset(t, n)
  if t ~= nil and type(t) ~= "table" then
    error(("bad argument #%d to 'select' (table expected, got %s)"):format(n, type(t)), 3)
  end
end

local function add(out, s)
  if out[s] == nil then
    local n = #out + 1
    out[n], out[s] = s, n
  end
end

local poll, fdinfo, now = core.poll, core.fdinfo, duplex.now
-- select's descriptor lists, reused from call to call (less garbage per
-- call; a task that waits in select holds them: poll copies them first)
local rfds_, rsocks_, wfds_, wsocks_ = {}, {}, {}, {}
local busy = false

-- select(recvt, sendt [, timeout]) -> readable, writable [, "timeout"]
function socket.select(recvt, sendt, timeout)
  checkset(recvt, 1)
  checkset(sendt, 2)
  if timeout ~= nil and type(timeout) ~= "number" then
    timeout = tonumber(timeout) or error("bad argument #3 to 'select' (number expected, got "
      .. type(timeout) .. ")", 2)
  end
  local shared = not busy             -- another task may be waiting with them
  local rfds, rsocks, wfds, wsocks
  if shared then
    busy = true
    rfds, rsocks, wfds, wsocks = rfds_, rsocks_, wfds_, wsocks_
  else
    rfds, rsocks, wfds, wsocks = {}, {}, {}, {}
  end
  local rout, wout = {}, {}
  local nr, nw, waiting = 0, 0, nil
  if recvt then
    local i, s = 1, recvt[1]
    while s ~= nil do
      local fd, dirty
      local d = tcpkind[getmetatable(s)] and not s.fdover and (s.d or s.res)
      if d then                        -- the face's own: one call says both
        local n
        fd, n = fdinfo(d)
        dirty = n > 0
      else
        fd, dirty = fdof(s)
      end
      if dirty then add(rout, s)
      elseif fd >= 0 then nr = nr + 1; rfds[nr], rsocks[nr] = fd, s end
      i = i + 1
      s = recvt[i]
    end
  end
  if sendt then
    local i, s = 1, sendt[1]
    while s ~= nil do
      local fd, _, pend = fdof(s)
      if pend then
        if pend.done then add(wout, s) else waiting = waiting or {}; waiting[#waiting + 1] = s end
      elseif fd >= 0 then nw = nw + 1; wfds[nw], wsocks[nw] = fd, s end
      i = i + 1
      s = sendt[i]
    end
  end
  for k = nr + 1, #rfds do rfds[k], rsocks[k] = nil, nil end   -- the last call's rest
  for k = nw + 1, #wfds do wfds[k], wsocks[k] = nil, nil end
  local t = timeout
  if t == nil or t < 0 then t = nil end
  if #rout > 0 or #wout > 0 then t = 0 end
  local r, w, msg
  if waiting and t ~= 0 then
    -- connects going on in tasks: look at them every 10 ms meanwhile
    local deadline = t and now() + t
    repeat
      local slice = 0.01
      if deadline then slice = math.max(0, math.min(slice, deadline - now())) end
      r, w, msg = poll(rfds, wfds, slice)
      if not r then break end
      local any = #r > 0 or #w > 0
      for _, s in ipairs(waiting) do
        local pend = s.pending
        if pend and (pend.done or pend.retry) then add(wout, s); any = true end
      end
    until any or (deadline and now() >= deadline)
  else
    r, w, msg = poll(rfds, wfds, t)
  end
  if not r then
    if shared then busy = false end
    error("select failed: " .. tostring(w), 2)
  end
  for k = 1, #r do add(rout, rsocks[r[k]]) end
  for k = 1, #w do add(wout, wsocks[w[k]]) end
  if shared then
    for k = 1, nr do rsocks[k] = false end      -- hold no socket past the call
    for k = 1, nw do wsocks[k] = false end
    busy = false
  end
  if #rout == 0 and #wout == 0 then return rout, wout, "timeout" end
  return rout, wout
end

-- --- time ---------------------------------------------------------------------

-- sleep(s): blocks outside duplex.run; inside a task, yields to the others.
function socket.sleep(s)
  s = tonumber(s) or error("bad argument #1 to 'sleep' (number expected, got "
    .. type(s) .. ")", 2)
  if s ~= s or s < 0 then s = 0 end
  duplex.sleep(s)
end

socket.gettime = aux.gettime

-- --- dns ------------------------------------------------------------------------

local dns = {}
socket.dns = dns

-- /etc/hosts, for the reverse lookups duplex's resolver does not make.
local function hosts()
  local byaddr = {}
  local f = io.open("/etc/hosts")
  if not f then return byaddr end
  for line in f:lines() do
    line = line:gsub("#.*", "")
    local addr, names = line:match("^%s*(%S+)%s+(.+)$")
    if addr and byaddr[addr] == nil then
      local list = {}
      for name in names:gmatch("%S+") do list[#list + 1] = name end
      byaddr[addr] = list
    end
  end
  f:close()
  return byaddr
end

local function lookup(name, family)
  local r, msg, code = duplex.resolve(name, nil, { family = family })
  if not r then return nil, aux.err(msg, code) end
  return r
end

local function resolved(name, ips)
  local byaddr = hosts()
  local aliases, canon = {}, name
  local names = ips[1] and byaddr[ips[1]]
  if names then
    canon = names[1]
    for i = 2, #names do aliases[#aliases + 1] = names[i] end
  end
  return { name = canon, alias = aliases, ip = ips }
end

-- toip(name) -> ip, { name =, alias = {...}, ip = {...} } (IPv4, as
-- gethostbyname), or nil, "host not found"
function dns.toip(name)
  name = str(name, 1, "toip")
  local r = lookup(name, "inet")
  if not r then return nil, "host not found" end
  local ips = {}
  for i, a in ipairs(r) do ips[i] = a.host end
  return ips[1], resolved(name, ips)
end

-- tohostname(addr) -> name, resolved; names from /etc/hosts only
function dns.tohostname(addr)
  addr = str(addr, 1, "tohostname")
  local r = lookup(addr, "inet")
  if not r then return nil, "host not found" end
  local byaddr = hosts()
  local names = byaddr[r[1].host]
  if not names then return nil, "host not found" end
  local ips = {}
  for i, a in ipairs(r) do ips[i] = a.host end
  local res = resolved(names[1], ips)
  return res.name, res
end

function dns.gethostname()
  local f = io.open("/proc/sys/kernel/hostname") or io.open("/etc/hostname")
  if f then
    local name = f:read("*l")
    f:close()
    if name and name ~= "" then return name end
  end
  return os.getenv("HOSTNAME") or "localhost"
end

-- getaddrinfo(host) -> { { family = "inet" | "inet6", addr = }, ... }
function dns.getaddrinfo(host)
  host = str(host, 1, "getaddrinfo")
  local r, e = lookup(host)
  if not r then return nil, e end
  local out = {}
  for i, a in ipairs(r) do out[i] = { family = a.family, addr = a.host } end
  return out
end

-- getnameinfo(host, serv) -> names, service; names from /etc/hosts, else
-- the numeric address (as getnameinfo without NI_NAMEREQD)
function dns.getnameinfo(host, serv)
  if host == nil and serv == nil then error("host and serv cannot be both nil", 2) end
  local names, service
  if host ~= nil then
    host = str(host, 1, "getnameinfo")
    local r, e = lookup(host)
    if not r then return nil, e end
    local byaddr = hosts()
    names = {}
    for i, a in ipairs(r) do
      local n = byaddr[a.host]
      names[i] = n and n[1] or a.host
    end
  end
  if serv ~= nil then
    local p = aux.port(serv)
    if not p then return nil, aux.strings.EAI_SERVICE end
    service = tostring(p)
    local f = io.open("/etc/services")
    if f then
      for line in f:lines() do
        local name, num = line:match("^([%w%-%.]+)%s+(%d+)/tcp")
        if name and tonumber(num) == p then service = name; break end
      end
      f:close()
    end
    return names, service
  end
  return names
end

-- --- newtry, protect, try, skip -----------------------------------------------

-- An error newtry raises: its message in a table of this metatable, which
-- protect knows (debug.getmetatable: __metatable hides it from others).
local wrapped = { __metatable = false }

local function nothing() end

function socket.newtry(finalizer)
  if finalizer == nil then finalizer = nothing end
  return function(...)
    if not (...) then
      finalizer()
      error(setmetatable({ (select_(2, ...)) }, wrapped), 0)
    end
    return ...
  end
end

local function unwrap(ok, ...)
  if ok then return ... end
  local e = ...
  if type(e) == "table" and rawmt(e) == wrapped then return nil, e[1] end
  error(e, 0)
end

-- protect(f): f's errors from newtry as nil, message; others raised
-- again. The protected function may wait (duplex.pcall: PUC 5.1 too).
function socket.protect(f)
  return function(...)
    return unwrap(pcall(f, ...))
  end
end

socket.try = socket.newtry()

function socket.skip(d, ...)
  d = tonumber(d) or error("bad argument #1 to 'skip' (number expected, got " .. type(d) .. ")", 2)
  return select_(d + 1, ...)
end

-- --- install --------------------------------------------------------------------

-- Make this the `socket.core` that LuaSocket's Lua modules load, and
-- load its socket.lua (which must be on package.path, beside ltn12.lua,
-- mime.lua and socket/*.lua). Returns the `socket` module.
function socket.install()
  local loaded = package.loaded
  if loaded["socket.core"] ~= nil and loaded["socket.core"] ~= socket then
    error("duplex.socket: LuaSocket's own socket.core was loaded first", 2)
  end
  loaded["socket.core"] = socket
  -- LuaSocket ignores SIGPIPE when it loads, and code on it relies on that
  -- where it writes to a socket by other means (LuaSec, over getfd); duplex's
  -- own writes never raise it. The face does the same, through onsignal
  -- (a program's own PIPE handler stays).
  local old = duplex.onsignal("PIPE", nothing)
  if type(old) == "function" then duplex.onsignal("PIPE", old) end
  return require "socket"
end

return socket
