-- duplex.socket_aux: what the TCP and UDP halves of LuaSocket's face
-- (duplex.socket) share: classes as LuaSocket makes them (a metatable per
-- class, its __index holding every method of the family and `class`),
-- LuaSocket's argument errors, its error strings from duplex's codes,
-- its two timeouts, ports and the wall clock. No sockets are made here.
-- Parses on Lua 5.1 to 5.4 and LuaJIT.

local duplex = require "duplex"

local aux = {}

local floor, huge = math.floor, math.huge
local getinfo = debug.getinfo

-- LuaSocket pushes most of its numbers with lua_pushnumber: floats on 5.3+.
function aux.num(n) return n + 0.0 end

-- A family of classes: aux.family({ "tcp{master}", ... }, methods) makes
-- one metatable per class, whose __index has every method and `class`.
function aux.family(names, methods, meta)
  local mts = {}
  for _, name in ipairs(names) do
    local index = { class = name }
    for k, f in pairs(methods) do index[k] = f end
    local mt = { __index = index, __name = name }
    for k, f in pairs(meta or {}) do mt[k] = f end
    mts[name] = mt
  end
  return mts
end

-- "tcp{client}: 0x55d1c3a0": the object's own address, taken once.
function aux.newobject(mt)
  local o = {}
  o.addr = tostring(o):match("0x%x+") or tostring(o):match("[%x]+$")
  return setmetatable(o, mt)
end

function aux.tostring(o)
  return getmetatable(o).__index.class .. ": " .. o.addr
end

-- LuaSocket's auxiliar_checkclass/checkgroup: self must be of one of the
-- classes in `ok` (a set of names); else the argument error it raises.
function aux.check(self, ok, expected)
  local mt = getmetatable(self)
  local cls = type(self) == "table" and mt and type(mt.__index) == "table" and rawget(mt.__index, "class")
  if cls and ok[cls] then return self end
  local ar = getinfo(2, "n") or {}
  local name = ar.name or "?"
  local msg
  if ar.namewhat == "method" then
    msg = ("calling '%s' on bad self (%s expected)"):format(name, expected)
  else
    msg = ("bad argument #1 to '%s' (%s expected)"):format(name, expected)
  end
  error(msg, 3)
end

function aux.argerror(n, fname, msg)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 3)
end

-- LuaSocket's strings for duplex's codes (usocket.c's socket_strerror and
-- pierror.h); anything else as strerror says it, the last part of
-- duplex's message ("connect 10.1.2.3:80: No route to host").
local strings = {
  ETIMEDOUT = "timeout", EAGAIN = "timeout",
  ECONNRESET = "closed", EPIPE = "closed", ECONNABORTED = "closed",
  EBADF = "closed", ECANCELED = "closed",
  ECONNREFUSED = "connection refused", EISCONN = "already connected",
  EADDRINUSE = "address already in use", EACCES = "permission denied",
  EAI_NONAME = "host or service not provided, or not known",
  EAI_AGAIN = "temporary failure in name resolution",
  EAI_FAIL = "non-recoverable failure in name resolution",
  EAI_FAMILY = "ai_family not supported", EAI_MEMORY = "memory allocation failure",
  EAI_SERVICE = "service not supported for socket type",
  EAI_SOCKTYPE = "ai_socktype not supported", EAI_BADFLAGS = "invalid value for ai_flags",
  EAI_OVERFLOW = "argument buffer overflow", EAI_NODATA = "host or service not provided, or not known",
  EAI_ADDRFAMILY = "host or service not provided, or not known",
}
aux.strings = strings

function aux.err(msg, code)
  local s = code and strings[code]
  if s then return s end
  if type(msg) ~= "string" then return "closed" end
  return msg:match(": ([^:]*)$") or msg
end

-- A port as LuaSocket takes it: a number, or a string of digits or a
-- service name (/etc/services, tcp or udp). nil when unknown.
local services
function aux.port(p, proto)
  local n = tonumber(p)
  if n then return floor(n) end
  if type(p) ~= "string" then return nil end
  if not services then
    services = {}
    local f = io.open("/etc/services")
    if f then
      for line in f:lines() do
        local name, num, pr, rest = line:match("^([%w%-%.]+)%s+(%d+)/(%a+)%s*([^#]*)")
        if name then
          services[name .. "/" .. pr] = tonumber(num)
          for alias in rest:gmatch("[%w%-%.]+") do services[alias .. "/" .. pr] = tonumber(num) end
        end
      end
      f:close()
    end
  end
  return services[p .. "/" .. (proto or "tcp")]
end

-- LuaSocket's timeouts: `block` bounds each wait, `total` the whole call
-- (both < 0: none). On duplex: block is the idle timeout (no byte moved
-- for that long), total the call's timeout. What the object last gave
-- its duplex socket is kept in o.applied, so a call sets nothing twice.
function aux.settimeout(self, t, mode, fname)
  t = t == nil and -1 or tonumber(t)
  if not t then aux.argerror(2, fname or "settimeout", "number expected") end
  mode = mode or "b"
  local m = type(mode) == "string" and mode:sub(1, 1)
  if m == "b" then self.block = t
  elseif m == "t" or m == "r" then self.total = t
  else aux.argerror(3, fname or "settimeout", "invalid timeout mode") end
  self.applied = nil
  return 1.0
end

-- The timeout of one wait, for calls that wait once (accept, connect):
-- nil none, else seconds.
function aux.oncetimeout(self)
  local b, t = self.block or -1, self.total or -1
  if b < 0 and t < 0 then return nil end
  if b < 0 then return t end
  if t < 0 then return b end
  return b < t and b or t
end

-- Give a duplex client (or datagram socket: no idle timeout there) the
-- object's timeouts.
function aux.apply(self, d, stream)
  local b, t = self.block or -1, self.total or -1
  if self.applied and self.ab == b and self.at == t then return end
  if b == 0 or t == 0 then
    d:settimeout(0)
    if stream then d:setoption("idletimeout", false) end
  elseif stream then
    d:settimeout(t >= 0 and t ~= huge and t or nil)
    d:setoption("idletimeout", b > 0 and b ~= huge and b or false)
  else
    d:settimeout(aux.oncetimeout(self))
  end
  self.applied, self.ab, self.at = true, b, t
end

-- The wall clock in seconds, as LuaSocket's gettime: the monotonic clock
-- plus an offset taken once, so that differences are exact. Lua itself
-- tells the wall clock to the second only; the offset comes from
-- `date +%s.%N` (once, at the first call), else from os.time() (never
-- ahead of the wall clock, up to a second behind). A wall clock set
-- afterwards by more than a second is followed.
local now, time = duplex.now, os.time
local base

local function calibrate()
  local p = io.popen and io.popen("date +%s.%N 2>/dev/null")
  local w = p and tonumber(p:read("*l") or "")
  if p then p:close() end
  if w and math.abs(w - time()) < 2 then return w - now() end
  return time() - now()
end

function aux.gettime()
  local m = now()
  if not base then base = calibrate() end
  local t = base + m
  local w = time()
  if t < w - 1 or t >= w + 2 then        -- the wall clock was set
    base = calibrate()
    t = base + m
  end
  return t
end

return aux
