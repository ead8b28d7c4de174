-- duplex.socket_udp: LuaSocket's UDP objects (udp{unconnected},
-- udp{connected}) on duplex.udp, for duplex.socket.
--
-- udp() has no descriptor until its first sendto, setsockname or
-- setpeername (LuaSocket 3); udp4() and udp6() have one at once. duplex
-- binds a datagram socket when it makes it, so setsockname makes a new
-- one (bound) in place of the unbound one, and setpeername("*") one bound
-- where the old one was, unconnected. Datagrams come whole up to 64 KiB;
-- receive(size) gives the first size bytes, as LuaSocket does.

local duplex = require "duplex"
local aux = require "duplex.socket_aux"

local udp = {}

local num, err, check = aux.num, aux.err, aux.check
local floor, sub, type, tostring, tonumber = math.floor, string.sub, type, tostring, tonumber

local DGRAM = 65536
local UNCONN = { ["udp{unconnected}"] = true }
local CONN = { ["udp{connected}"] = true }
local ANY = { ["udp{unconnected}"] = true, ["udp{connected}"] = true }

local M = {}
local mts

local function setclass(o, name) setmetatable(o, mts[name]) end

local function newudp(fam)
  local o = aux.newobject(mts["udp{unconnected}"])
  o.fam, o.opts, o.block, o.total = fam, {}, -1, -1
  if fam then
    local d, msg, code = duplex.udp(nil, nil, { family = fam })
    if not d then return nil, err(msg, code) end
    o.d = d
  end
  return o
end

local function anyhost(self)
  return self.fam == "inet6" and "::" or "0.0.0.0"
end

-- The duplex socket, made unbound on first use.
local function ensure(self)
  if self.d then return self.d end
  local o = self.opts
  local d, msg, code = duplex.udp(nil, nil, { family = self.fam,
    reuseaddr = o.reuseaddr, reuseport = o.reuseport })
  if not d then return nil, err(msg, code) end
  self.d, self.applied = d, nil
  return d
end

local function host_of(self, host, port)
  if host == "*" then return anyhost(self) end
  if not self.fam then return host end
  local r, msg, code = duplex.resolve(host, port, { family = self.fam })
  if not r then return nil, err(msg, code) end
  return r[1].host
end

local function checkstr(v, n, fname)
  if type(v) == "number" then return tostring(v) end
  if type(v) ~= "string" then aux.argerror(n, fname, "string expected, got " .. (v == nil and "no value" or type(v))) end
  return v
end

function M.sendto(self, data, ip, port)
  check(self, UNCONN, "udp{unconnected}")
  data = checkstr(data, 2, "sendto")
  ip = checkstr(ip, 3, "sendto")
  checkstr(port, 4, "sendto")
  if self.closed or self.fdover then return nil, "closed" end
  local p = aux.port(port, "udp")
  if not p then return nil, aux.strings.EAI_SERVICE end
  local d, e = ensure(self)
  if not d then return nil, e end
  aux.apply(self, d, false)
  local ok, msg, code = d:sendto(data, ip, p)
  if not ok then return nil, err(msg, code) end
  return num(#data)
end

function M.send(self, data)
  check(self, CONN, "udp{connected}")
  data = checkstr(data, 2, "send")
  local d = self.d
  if not d or self.fdover then return nil, "closed" end
  aux.apply(self, d, false)
  local ok, msg, code = d:send(data)
  if not ok then return nil, err(msg, code) end
  return num(#data)
end

local function size_of(size, fname)
  if size == nil then return nil end
  local n = tonumber(size)
  if not n then aux.argerror(2, fname, "number expected, got " .. type(size)) end
  return floor(n)
end

local function cut(data, size)
  if size and #data > size then return sub(data, 1, size) end
  return data
end

function M.receive(self, size)
  check(self, ANY, "udp{any}")
  size = size_of(size, "receive")
  local d = self.d
  if not d or self.fdover then return nil, "closed" end
  aux.apply(self, d, false)
  local data, msg, code
  if self.peer then data, msg, code = d:recv(DGRAM)
  else data, msg, code = d:recvfrom(DGRAM) end
  if not data then return nil, err(msg, code) end
  return cut(data, size)
end

function M.receivefrom(self, size)
  check(self, UNCONN, "udp{unconnected}")
  size = size_of(size, "receivefrom")
  local d = self.d
  if not d or self.fdover then return nil, "closed" end
  aux.apply(self, d, false)
  local data, host, port = d:recvfrom(DGRAM)
  if not data then return nil, err(host, port) end
  return cut(data, size), host, port
end

function M.setsockname(self, host, port)
  check(self, UNCONN, "udp{unconnected}")
  host = checkstr(host, 2, "setsockname")
  checkstr(port, 3, "setsockname")
  if self.closed then return nil, "closed" end
  if self.bound then return nil, "Invalid argument" end
  local p = aux.port(port, "udp")
  if not p then return nil, aux.strings.EAI_SERVICE end
  local h, e = host_of(self, host, p)
  if not h then return nil, e end
  local o = self.opts
  local d, msg, code = duplex.udp(h, p, { reuseaddr = o.reuseaddr, reuseport = o.reuseport })
  if not d then return nil, err(msg, code) end
  if self.d then self.d:close() end
  self.d, self.applied, self.bound = d, nil, true
  local _, _, fam = d:getsockname()
  self.fam = fam
  return num(1)
end

function M.setpeername(self, host, port)
  check(self, ANY, "udp{any}")
  host = checkstr(host, 2, "setpeername")
  if self.closed then return nil, "closed" end
  if host == "*" then                       -- unconnect: bound where it was
    if self.peer and self.d then
      local h, p = self.d:getsockname()
      self.d:close()
      self.d, self.applied = nil, nil
      local d = duplex.udp(h, p, { reuseaddr = self.opts.reuseaddr })
      if d then self.d, self.bound = d, true end
    end
    self.peer = nil
    setclass(self, "udp{unconnected}")
    return num(1)
  end
  checkstr(port, 3, "setpeername")
  local p = aux.port(port, "udp")
  if not p then return nil, aux.strings.EAI_SERVICE end
  local h, e = host_of(self, host, p)
  if not h then return nil, e end
  local d
  d, e = ensure(self)
  if not d then return nil, e end
  local ok, msg, code = d:connect(h, p)
  if not ok then return nil, err(msg, code) end
  self.peer = true
  setclass(self, "udp{connected}")
  return num(1)
end

function M.getpeername(self)
  check(self, CONN, "udp{connected}")
  local d = self.d
  if not d then return nil, "closed" end
  local h, p, fam = d:getpeername()
  if not h then return nil, err(p, fam) end
  return h, p, fam
end

function M.getsockname(self)
  check(self, ANY, "udp{any}")
  local d = self.d
  if not d then return nil, "Bad file descriptor" end
  local h, p, fam = d:getsockname()
  if not h then return nil, err(p, fam) end
  return h, p, fam
end

function M.getfamily(self)
  check(self, ANY, "udp{any}")
  return self.fam == "inet6" and "inet6" or "inet4"
end

function M.close(self)
  check(self, ANY, "udp{any}")
  if self.d then self.d:close() end
  self.d, self.closed = nil, true
  return num(1)
end

function M.getfd(self)
  check(self, ANY, "udp{any}")
  if self.fdover then return num(self.fdover) end
  return num(self.d and self.d:fileno() or -1)
end

function M.setfd(self, fd)
  check(self, ANY, "udp{any}")
  fd = tonumber(fd) or aux.argerror(2, "setfd", "number expected")
  if self.d and self.d:fileno() == fd then self.fdover = nil else self.fdover = fd end
end

function M.dirty(self)
  check(self, ANY, "udp{any}")
  return false
end

function M.settimeout(self, t, mode)
  check(self, ANY, "udp{any}")
  return aux.settimeout(self, t, mode)
end

function M.gettimeout(self)
  check(self, ANY, "udp{any}")
  return num(self.block), num(self.total)
end

-- LuaSocket's option names and duplex's.
local names = {
  broadcast = "broadcast", reuseaddr = "reuseaddr", reuseport = "reuseport",
  ["ip-multicast-ttl"] = "multicast_ttl", ["ip-multicast-loop"] = "multicast_loop",
  ["ipv6-unicast-hops"] = "ttl", ["ipv6-multicast-hops"] = "multicast_ttl",
  ["ipv6-multicast-loop"] = "multicast_loop",
  ["recv-buffer-size"] = "rcvbuf", ["send-buffer-size"] = "sndbuf",
}
local membership = {
  ["ip-add-membership"] = "join", ["ip-drop-membership"] = "leave",
  ["ipv6-add-membership"] = "join", ["ipv6-drop-membership"] = "leave",
}
local unsupported = { dontroute = true, ["ip-multicast-if"] = true, ["ipv6-v6only"] = true }

function M.setoption(self, name, v)
  check(self, ANY, "udp{any}")
  if type(name) ~= "string" then aux.argerror(2, "setoption", "string expected") end
  local how = membership[name]
  if how then
    if type(v) ~= "table" then aux.argerror(3, "setoption", "table expected") end
    local d, e = ensure(self)
    if not d then return nil, e end
    local iface = v.interface
    if iface == "*" or iface == "0.0.0.0" or iface == "::" then iface = nil end
    local ok, msg, code = d:setoption(how, v.multiaddr, iface)
    if not ok then return nil, err(msg, code) end
    return num(1)
  end
  local dn = names[name]
  if not dn then
    if unsupported[name] then return nil, "not supported by duplex" end
    aux.argerror(2, "setoption", "unsupported option `" .. name .. "'")
  end
  if dn == "multicast_ttl" or dn == "ttl" or dn == "rcvbuf" or dn == "sndbuf" then
    v = floor(tonumber(v) or aux.argerror(3, "setoption", "number expected"))
  else
    v = not not v
  end
  self.opts[dn] = v
  if self.d then
    local ok, msg, code = self.d:setoption(dn, v)
    if not ok then return nil, err(msg, code) end
  end
  return num(1)
end

function M.getoption(self, name)
  check(self, ANY, "udp{any}")
  local dn = names[name]
  if not dn then
    if unsupported[name] or membership[name] then return nil, "not supported by duplex" end
    aux.argerror(2, "getoption", "unsupported option `" .. tostring(name) .. "'")
  end
  if not self.d then
    local v = self.opts[dn]
    if v == nil then return nil, "Bad file descriptor" end
    return v
  end
  local v, msg, code = self.d:getoption(dn)
  if v == nil then return nil, err(msg, code) end
  if type(v) == "number" then v = num(v) end
  return v
end

mts = aux.family({ "udp{unconnected}", "udp{connected}" }, M, { __tostring = aux.tostring })

udp.methods, udp.classes, udp.new = M, mts, newudp

function udp.fd(o)
  if o.fdover then return o.fdover end
  return o.d and o.d:fileno() or -1
end

return udp
