-- duplex.socket_tcp: LuaSocket's TCP objects (tcp{master}, tcp{client},
-- tcp{server}) on duplex's servers and clients, for duplex.socket.
--
-- A master holds no duplex object until bind (a server, listening at
-- once, so that bind reports "address already in use" where LuaSocket
-- does) or connect (a client). tcp4() and tcp6() give it a descriptor at
-- once, as LuaSocket does: a datagram socket of the family held as a
-- placeholder until then; tcp() has none (getfd() is -1), as in
-- LuaSocket 3. Options set on a master are kept and given to the server
-- or client it becomes. Class changes swap the object's metatable.

local duplex = require "duplex"
local aux = require "duplex.socket_aux"
local socketline = require("duplex.core").socketline

local tcp = {}

local num, err, check = aux.num, aux.err, aux.check
local floor, huge, min = math.floor, math.huge, math.min
local type, tostring, tonumber, setmetatable = type, tostring, tonumber, setmetatable
local find, gsub, sub, byte = string.find, string.gsub, string.sub, string.byte
local getmetatable = getmetatable

local BACKLOG = 128          -- bind listens at once; listen(n) asks for more
local SLICE = 524288         -- send copies at most this much at a time
local MAXLINE = 2^53         -- LuaSocket reads lines of any length

local MASTER = { ["tcp{master}"] = true }
local CLIENT = { ["tcp{client}"] = true }
local SERVER = { ["tcp{server}"] = true }
local ANY = { ["tcp{master}"] = true, ["tcp{client}"] = true, ["tcp{server}"] = true }

local M = {}                 -- the methods
local mts                    -- the classes, by name

local function setclass(o, name) setmetatable(o, mts[name]) end
local function class(o) return getmetatable(o).__index.class end

local function newtcp(fam)
  local o = aux.newobject(mts["tcp{master}"])
  o.fam, o.opts, o.block, o.total = fam, {}, -1, -1
  o.sent, o.recvd, o.birth = 0, 0, duplex.now()
  if fam then
    local res, msg, code = duplex.udp(nil, nil, { family = fam })
    if not res then return nil, err(msg, code) end
    o.res = res
  end
  return o
end

-- --- options --------------------------------------------------------------

-- LuaSocket's names and duplex's; a linger table is {on =, timeout =}.
local names = {
  ["tcp-nodelay"] = "nodelay", keepalive = "keepalive", linger = "linger",
  reuseaddr = "reuseaddr", reuseport = "reuseport", ["ipv6-v6only"] = "v6only",
  ["recv-buffer-size"] = "rcvbuf", ["send-buffer-size"] = "sndbuf",
}
-- LuaSocket's other names: known, but not duplex's to set.
local unsupported = {
  bindtodevice = true, ["tcp-keepidle"] = true, ["tcp-keepcnt"] = true,
  ["tcp-keepintvl"] = true, ["tcp-defer-accept"] = true, ["tcp-fastopen"] = true,
  ["tcp-fastopen-connect"] = true,
}
-- Options a client takes (a server gives them to each client it accepts).
local perclient = { keepalive = true, linger = true, rcvbuf = true, sndbuf = true, nodelay = true }

local function toduplex(name, v)
  if name == "linger" then
    if type(v) ~= "table" then error("bad argument #3 to 'setoption' (table expected)", 3) end
    if not v.on then return false end
    return floor(tonumber(v.timeout) or 0)
  elseif name == "rcvbuf" or name == "sndbuf" then
    return floor(tonumber(v) or error("bad argument #3 to 'setoption' (number expected)", 3))
  end
  return not not v
end

local function fromduplex(name, v)
  if name == "linger" then
    if v == false then return { on = false, timeout = 0 } end
    return { on = true, timeout = v }
  end
  return v
end

-- Give client c what the object's options say (at connect or accept).
local function giveoptions(c, opts)
  c:setoption("maxline", MAXLINE)
  for name, v in pairs(opts) do
    if perclient[name] and name ~= "nodelay" then c:setoption(name, v) end
  end
end

-- What duplex's client and server each take (a server gives keepalive
-- and linger to the clients it accepts).
local asks = {
  ["tcp{client}"] = { nodelay = true, keepalive = true, linger = true, rcvbuf = true, sndbuf = true },
  ["tcp{server}"] = { nodelay = true, rcvbuf = true, sndbuf = true, reuseaddr = true,
                      reuseport = true, v6only = true },
}
asks["tcp{master}"] = asks["tcp{server}"]      -- bound: its listener

local function optname(name, fname)
  if type(name) ~= "string" then aux.argerror(2, fname, "string expected, got " .. type(name)) end
  local dn = names[name]
  if dn then return dn end
  if unsupported[name] then return nil end
  aux.argerror(2, fname, "unsupported option `" .. name .. "'")
end

function M.setoption(self, name, v)
  check(self, ANY, "tcp{any}")
  local dn = optname(name, "setoption")
  if not dn then return nil, "not supported by duplex" end
  v = toduplex(dn, v)
  local d = self.d
  if d and asks[class(self)][dn] then
    if dn == "v6only" then return nil, "Invalid argument" end   -- bound already
    local ok, msg, code = d:setoption(dn, v)
    if not ok then return nil, err(msg, code) end
  end
  self.opts[dn] = v
  return num(1)
end

local defaults = { nodelay = false, keepalive = false, linger = false, reuseaddr = false,
                   reuseport = false }

function M.getoption(self, name)
  check(self, ANY, "tcp{any}")
  if name == "error" then return nil end    -- LuaSocket: nil when there is none
  local dn = optname(name, "getoption")
  if not dn then return nil, "not supported by duplex" end
  local d, v = self.d, nil
  if d and asks[class(self)][dn] then
    local msg, code
    v, msg, code = d:getoption(dn)
    if v == nil then return nil, err(msg, code) end
  else
    v = self.opts[dn]
    if v == nil then v = defaults[dn] end
    if v == nil and dn == "v6only" then v = self.fam == "inet6" end
    if v == nil then return nil, "Bad file descriptor" end
  end
  if dn == "rcvbuf" or dn == "sndbuf" then v = num(v) end
  return fromduplex(dn, v)
end

-- --- life cycle -------------------------------------------------------------

local function anyhost(self)
  return self.fam == "inet6" and "::" or "0.0.0.0"
end

-- Host as LuaSocket's getaddrinfo takes it, for this object's family:
-- "*" is any address; a name is looked up in the family when it has one.
local function resolvehost(self, host, port, timeout)
  if host == "*" then return anyhost(self) end
  if not self.fam then return host end
  local r, msg, code = duplex.resolve(host, port, { family = self.fam, timeout = timeout })
  if not r then return nil, err(msg, code) end
  return r[1].host
end

-- bind's and connect's host and port, checked as LuaSocket checks them.
local function checkaddress(fname, host, port)
  if type(host) ~= "string" and type(host) ~= "number" then
    aux.argerror(2, fname, "string expected, got " .. type(host))
  end
  if port == nil then aux.argerror(3, fname, "string expected, got no value") end
  return tostring(host)
end

local function dropplaceholder(self)
  if self.res then self.res:close(); self.res = nil end
end

function M.bind(self, host, port)
  check(self, MASTER, "tcp{master}")
  host = checkaddress("bind", host, port)
  if self.closed then return nil, "closed" end
  if self.d then return nil, "Invalid argument" end
  local p = aux.port(port)
  if not p then return nil, aux.strings.EAI_SERVICE end
  local h, e = resolvehost(self, host, p)
  if not h then return nil, e end
  local o = self.opts
  local v6 = find(h, ":", 1, true) ~= nil
  local v6only = nil
  if v6 then v6only = o.v6only ~= false end   -- LuaSocket makes inet6 sockets v6only
  local d, msg, code = duplex.listen(h, p, { backlog = BACKLOG, reuseaddr = o.reuseaddr or false,
    reuseport = o.reuseport or nil, v6only = v6only, nodelay = o.nodelay or false })
  if not d then return nil, err(msg, code) end
  for _, name in ipairs({ "rcvbuf", "sndbuf" }) do
    if o[name] then d:setoption(name, o[name]) end
  end
  dropplaceholder(self)
  self.d = d
  local _, _, fam = d:getsockname()
  self.fam = fam
  return num(1)
end

function M.listen(self, backlog)
  check(self, MASTER, "tcp{master}")
  if backlog ~= nil and not tonumber(backlog) then aux.argerror(2, "listen", "number expected, got " .. type(backlog)) end
  if self.closed then return nil, "closed" end
  if not self.d then                        -- listen unbound: any port, as the kernel does
    local ok, e = M.bind(self, anyhost(self), 0)
    if not ok then return nil, e end
  end
  backlog = floor(tonumber(backlog) or 32)
  if backlog ~= BACKLOG then                -- the queue asked for: listen again, same address
    local h, p = self.d:getsockname()
    local o = self.opts
    self.d:close()
    local d, msg, code = duplex.listen(h, p, { backlog = backlog < 0 and 0 or backlog, reuseaddr = true,
      reuseport = o.reuseport or nil, v6only = find(h, ":", 1, true) and o.v6only ~= false or nil,
      nodelay = o.nodelay or false })
    if not d then self.d = nil; return nil, err(msg, code) end
    self.d = d
  end
  setclass(self, "tcp{server}")
  return num(1)
end

local function newclient(fam, c, opts)
  local o = aux.newobject(mts["tcp{client}"])
  o.fam, o.opts, o.block, o.total = fam, {}, -1, -1
  o.sent, o.recvd, o.birth = 0, 0, duplex.now()
  for k, v in pairs(opts) do if perclient[k] then o.opts[k] = v end end
  o.d = c
  giveoptions(c, o.opts)
  return o
end

function M.accept(self)
  check(self, SERVER, "tcp{server}")
  local d = self.d
  if not d or self.fdover then return nil, "closed" end
  local c, msg, code = d:accept(aux.oncetimeout(self) or huge)
  if not c then return nil, err(msg, code) end
  return newclient(self.fam, c, self.opts)
end

-- A connect that could not finish at once with timeout 0 (duplex gives
-- up such an attempt) goes on in a task of its own inside duplex.run:
-- select sees the object writable when it ended, and the next connect
-- says how ("already connected", as LuaSocket). Outside duplex.run
-- nothing can run it meanwhile: select reports the object writable after
-- a short wait, and the next connect tries again (1 when it succeeds).
local function pendingconnect(self, host, port, opts)
  local pend = { host = host, port = port, opts = opts }
  local ok = pcall(duplex.spawn, function()
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.timeout = nil
    pend.c, pend.msg, pend.code = duplex.connect(host, port, o)
    pend.done = true
    if pend.dropped and pend.c then pend.c:close() end
  end)
  if not ok then pend.retry = true end
  self.pending = pend
  return nil, "timeout"
end

local function connected(self, c)
  dropplaceholder(self)
  self.d, self.applied = c, nil
  self.pending = nil
  giveoptions(c, self.opts)
  local _, _, fam = c:getpeername()
  self.fam = self.fam or fam
end

function M.connect(self, host, port)
  check(self, ANY, "tcp{any}")
  host = checkaddress("connect", host, port)
  if self.closed then setclass(self, "tcp{client}"); return nil, "closed" end
  local pend = self.pending
  if pend and pend.retry then
    local c, msg, code = duplex.connect(pend.host, pend.port, pend.opts)
    if c then connected(self, c); return num(1) end
    if code == "EAGAIN" then return nil, "Operation already in progress" end
    self.pending = nil
    return nil, err(msg, code)
  end
  if pend then
    if not pend.done then return nil, "Operation already in progress" end
    if pend.c then connected(self, pend.c); return nil, "already connected" end
    self.pending = nil
    return nil, err(pend.msg, pend.code)
  end
  if class(self) ~= "tcp{master}" then return nil, "already connected" end
  self.host = host                          -- the name asked for (duplex.ssl's SNI)
  local p = aux.port(port)
  if not p then setclass(self, "tcp{client}"); return nil, aux.strings.EAI_SERVICE end
  local t = aux.oncetimeout(self)
  local opts = { nodelay = self.opts.nodelay or false, timeout = t }
  if self.d then                            -- bound: connect from there
    local bh, bp = self.d:getsockname()
    opts.bind = { bh, bp }
    self.d:close()
    self.d = nil
  end
  local h, e = resolvehost(self, host, p, t)
  setclass(self, "tcp{client}")             -- as LuaSocket, even when it fails
  if not h then return nil, e end
  local c, msg, code = duplex.connect(h, p, opts)
  if c then connected(self, c); return num(1) end
  if code == "EAGAIN" and t == 0 then return pendingconnect(self, h, p, opts) end
  return nil, err(msg, code)
end

function M.close(self)
  check(self, ANY, "tcp{any}")
  if self.d and not self.fdover then self.d:close() end
  dropplaceholder(self)
  local pend = self.pending
  if pend then pend.dropped = true; if pend.c then pend.c:close() end end
  self.d, self.pending, self.closed = nil, nil, true
  return num(1)
end

function M.shutdown(self, how)
  check(self, CLIENT, "tcp{client}")
  how = how or "both"
  local h = how == "both" and "rw" or how == "send" and "w" or how == "receive" and "r"
  if not h then aux.argerror(2, "shutdown", "invalid option '" .. tostring(how) .. "'") end
  if self.d then self.d:shutdown(h) end
  return num(1)
end

-- --- descriptors -------------------------------------------------------------

function M.getfd(self)
  check(self, ANY, "tcp{any}")
  if self.fdover then return num(self.fdover) end
  local s = self.d or self.res
  local fd = s and s:fileno()
  return num(fd or -1)
end

-- LuaSec's way to take a socket over (getfd, then setfd(-1)): another
-- number makes the object closed for I/O ("closed") and its close leaves
-- the descriptor alone; the duplex object is kept for ever (given), so
-- that no collection closes the descriptor under its new owner. Bytes
-- duplex had buffered stay there. Its own number gives it back.
local given = {}
function M.setfd(self, fd)
  check(self, ANY, "tcp{any}")
  fd = tonumber(fd) or aux.argerror(2, "setfd", "number expected")
  local s = self.d or self.res
  if s and s:fileno() == fd then
    self.fdover = nil
    given[s] = nil
  else
    self.fdover = fd
    if s then given[s] = true end
  end
end

function M.dirty(self)
  check(self, ANY, "tcp{any}")
  local d = self.d
  return d ~= nil and d.buffered ~= nil and not self.fdover and d:buffered() > 0
end

function M.getfamily(self)
  check(self, ANY, "tcp{any}")
  return self.fam == "inet6" and "inet6" or "inet4"
end

function M.getsockname(self)
  check(self, ANY, "tcp{any}")
  local d = self.d
  if d then
    local h, p, fam = d:getsockname()
    if not h then return nil, err(p, fam) end
    return h, p, fam
  end
  if self.res then return anyhost(self), 0, self.fam end
  return nil, "Bad file descriptor"
end

function M.getpeername(self)
  check(self, ANY, "tcp{any}")
  local d = self.d
  if d and d.getpeername then
    local h, p, fam = d:getpeername()
    if not h then return nil, err(p, fam) end
    return h, p, fam
  end
  return nil, "Transport endpoint is not connected"
end

function M.settimeout(self, t, mode)
  check(self, ANY, "tcp{any}")
  return aux.settimeout(self, t, mode)
end

function M.gettimeout(self)
  check(self, ANY, "tcp{any}")
  return num(self.block), num(self.total)
end

function M.getstats(self)
  check(self, CLIENT, "tcp{client}")
  return num(self.recvd), num(self.sent), num(duplex.now() - self.birth)
end

function M.setstats(self, r, s, a)
  check(self, CLIENT, "tcp{client}")
  self.recvd = tonumber(r) or self.recvd
  self.sent = tonumber(s) or self.sent
  if tonumber(a) then self.birth = duplex.now() - tonumber(a) end
  return num(1)
end

-- --- receive and send -------------------------------------------------------

-- What a failed read leaves: LuaSocket hands over what it had received
-- and consumes it; duplex keeps it buffered, so it is taken here.
local function drain(d)
  local n = d:buffered()
  if n == 0 then return "" end
  return d:read(n) or ""
end

local function nocr(s)
  if find(s, "\r", 1, true) then return (gsub(s, "\r", "")) end
  return s
end

-- What receive("*l") gives for socketline's results (every CR dropped,
-- in C: the same in Lua cost three times the read itself).
local function lineresult(self, d, prefix, line, n, code, partial)
  if line then
    self.recvd = self.recvd + n
    if prefix ~= "" then return prefix .. line end
    return line
  end
  if not n then                        -- the stream ended inside a line
    local rest = drain(d)
    self.recvd = self.recvd + #rest
    return nil, "closed", prefix .. nocr(rest)
  end
  local e = err(n, code)
  local part = partial or ""            -- a timeout's comes with it (consumed)
  if part == "" then return nil, e, prefix end
  self.recvd = self.recvd + #part
  return nil, e, prefix .. nocr(part)
end

local function receive(self, pat, prefix)
  local d = self.d
  if not d or self.fdover then return nil, "closed", prefix end
  if not self.applied then aux.apply(self, d, true) end     -- settimeout unsets it
  if pat == "*l" or pat == nil then
    return lineresult(self, d, prefix, socketline(d))
  elseif pat == "*a" then
    local s, msg, code, partial = d:read("a")
    if s then
      self.recvd = self.recvd + #s
      if s == "" then return nil, "closed", prefix end
      if prefix ~= "" then return prefix .. s end
      return s
    end
    local e = err(msg, code)
    local part = partial or (e == "timeout" and drain(d)) or ""
    self.recvd = self.recvd + #part
    return nil, e, prefix .. part
  end
  local wanted = floor(pat)
  local count = wanted
  if #prefix > 0 then
    if wanted <= #prefix then return prefix end
    count = wanted - #prefix
  end
  local s, msg, code, partial = d:read(count)
  if s then
    self.recvd = self.recvd + #s
    if #s == count then
      if prefix ~= "" then return prefix .. s end
      return s
    end
    return nil, "closed", prefix .. s
  end
  if not msg then
    if count == 0 then return prefix end
    return nil, "closed", prefix
  end
  local e = err(msg, code)
  local part = partial or (e == "timeout" and drain(d)) or ""
  self.recvd = self.recvd + #part
  return nil, e, prefix .. part
end

local function withelapsed(t0, a, b, c)
  return a, b, c, aux.gettime() - t0
end

local CLIENTMT                -- tcp{client}'s metatable, for the fast paths

function M.receive(self, pat, prefix)
  -- (copas passes back the "" partial of the timeout before every wait)
  if (pat == nil or pat == "*l") and (prefix == nil or prefix == "") and getmetatable(self) == CLIENTMT then
    local d = self.d                           -- the common case, checked at once
    if d and self.applied and not self.fdover and not aux.M._DEBUG then
      return lineresult(self, d, "", socketline(d))
    end
    if not aux.M._DEBUG then return receive(self, "*l", "") end
  end
  check(self, CLIENT, "tcp{client}")
  return tcp.receive(self, pat, prefix)
end

-- receive's arguments checked, then receive: for any object with a
-- client's fields (d, fdover, block, total, recvd, applied: duplex.ssl's
-- connections too). Called as a tail call, so that argument errors name
-- the caller's caller.
function tcp.receive(self, pat, prefix)
  if prefix == nil then prefix = ""
  elseif type(prefix) == "number" then prefix = tostring(prefix)
  elseif type(prefix) ~= "string" then aux.argerror(3, "receive", "string expected, got " .. type(prefix)) end
  if type(pat) == "string" and tonumber(pat) then pat = tonumber(pat) end
  if type(pat) == "number" then
    if pat < 0 then aux.argerror(2, "receive", "invalid receive pattern") end
  elseif pat ~= nil then
    if type(pat) ~= "string" then aux.argerror(2, "receive", "string expected, got " .. type(pat)) end
    local p = sub(pat, 1, 2)
    if p == "*l" then pat = "*l" elseif p == "*a" then pat = "*a"
    else aux.argerror(2, "receive", "invalid receive pattern") end
  end
  if aux.M._DEBUG then return withelapsed(aux.gettime(), receive(self, pat, prefix)) end
  return receive(self, pat, prefix)
end

-- send(data, i, j): in slices of at most SLICE bytes, so that a send
-- resumed with i (copas, with timeout 0) copies no more than it sends.
local function send(self, data, i, j)
  local size = #data
  if i < 0 then i = size + i + 1 end
  if j < 0 then j = size + j + 1 end
  if i < 1 then i = 1 end
  if j > size then j = size end
  if i > j then return num(i - 1) end
  local d = self.d
  if not d or self.fdover then return nil, "closed", num(i - 1) end
  aux.apply(self, d, true)
  local deadline = self.total > 0 and self.total ~= huge and j - i + 1 > SLICE and duplex.now() + self.total
  local pos = i
  while pos <= j do
    local last = min(j, pos + SLICE - 1)
    local piece = (pos == 1 and last == size) and data or sub(data, pos, last)
    if deadline and pos > i then
      local left = deadline - duplex.now()
      d:settimeout(left > 0 and left or 0)
      self.applied = nil
    end
    local ok, msg, code, n = d:write(piece)
    if not ok then
      n = n or 0
      self.sent = self.sent + n
      return nil, err(msg, code), num(pos + n - 1)
    end
    self.sent = self.sent + (last - pos + 1)
    pos = last + 1
  end
  return num(j)
end

function M.send(self, data, i, j)
  if getmetatable(self) == CLIENTMT and (i == nil or i == 1) and j == nil
     and type(data) == "string" and #data <= SLICE and not aux.M._DEBUG then
    local d = self.d
    if d and not self.fdover and #data > 0 then   -- the common case: one write
      if not self.applied then aux.apply(self, d, true) end
      local ok, msg, code, n = d:write(data)
      if ok then
        self.sent = self.sent + #data
        return num(#data)
      end
      n = n or 0
      self.sent = self.sent + n
      return nil, err(msg, code), num(n)
    end
  end
  check(self, CLIENT, "tcp{client}")
  return tcp.send(self, data, i, j)
end

-- send's arguments checked, then send: as tcp.receive.
function tcp.send(self, data, i, j)
  if type(data) == "number" then data = tostring(data)
  elseif type(data) ~= "string" then aux.argerror(2, "send", "string expected, got " .. type(data)) end
  i = i == nil and 1 or floor(tonumber(i) or aux.argerror(3, "send", "number expected"))
  j = j == nil and -1 or floor(tonumber(j) or aux.argerror(4, "send", "number expected"))
  if aux.M._DEBUG then return withelapsed(aux.gettime(), send(self, data, i, j)) end
  return send(self, data, i, j)
end

M.setpeername = M.connect
M.setsockname = M.bind

mts = aux.family({ "tcp{master}", "tcp{client}", "tcp{server}" }, M,
                 { __tostring = aux.tostring })
CLIENTMT = mts["tcp{client}"]

tcp.methods, tcp.classes, tcp.new = M, mts, newtcp

-- For select: the object's descriptor (-1: none), whether bytes wait in
-- its buffer, and a connect going on in a task (its state).
function tcp.fd(o)
  if o.fdover then return o.fdover end
  local s = o.d or o.res
  return s and s:fileno() or -1
end

function tcp.dirty(o)
  local d = o.d
  return d ~= nil and d.buffered ~= nil and not o.fdover and d:buffered() > 0
end

function tcp.pending(o) return o.pending end

return tcp
