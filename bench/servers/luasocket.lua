-- LuaSocket peer: one socket.select loop, non-blocking sockets.
-- select() uses fd_set, so it cannot watch a descriptor >= FD_SETSIZE (1024):
-- past ~1020 connections LuaSocket raises "descriptor too large for set size"
-- and the server dies. That is the honest behaviour of this design.
local socket = require "socket"
local common = dofile(arg[0]:gsub("[^/]*$", "") .. "common.lua")
local mode, port = common.args()
local RESP, RESP_CLOSE, wants_close = common.RESP, common.RESP_CLOSE, common.wants_close

local srv = assert(socket.bind("127.0.0.1", port, 4096))
srv:settimeout(0)
common.announce(select(2, srv:getsockname()))

-- watched sets: arrays for select, plus index maps for O(1) removal
local recvt, recvi, sendt, sendi = { srv }, { [srv] = 1 }, {}, {}
local function add(set, idx, s) set[#set + 1] = s; idx[s] = #set end
local function del(set, idx, s)
  local i = idx[s]
  if not i then return end
  local last = set[#set]
  set[i], idx[last] = last, i
  set[#set], idx[s] = nil, nil
end

local inbuf, outbuf, closing = {}, {}, {}

local function drop(c)
  del(recvt, recvi, c); del(sendt, sendi, c)
  inbuf[c], outbuf[c], closing[c] = nil, nil, nil
  c:close()
end

-- send what we can; queue the rest and stop reading until it is flushed
local function push(c, data)
  local i, err, last = c:send(data)
  if i == #data then
    if closing[c] then drop(c) end
    return
  end
  if err ~= "timeout" then drop(c) return end
  outbuf[c] = data:sub(last + 1)
  del(recvt, recvi, c); add(sendt, sendi, c)
end

local function on_data(c, data)
  if mode == "echo" then return push(c, data) end
  local buf = (inbuf[c] or "") .. data
  local out, pos = {}, 1
  while true do
    local e = buf:find("\r\n\r\n", pos, true)
    if not e then break end
    local head = buf:sub(pos, e + 3)
    pos = e + 4
    if wants_close(head) then closing[c] = true; out[#out + 1] = RESP_CLOSE; break end
    out[#out + 1] = RESP
  end
  inbuf[c] = pos <= #buf and buf:sub(pos) or nil
  if #out > 0 then push(c, table.concat(out)) end
end

while true do
  local readable, writable = socket.select(recvt, sendt)
  for _, s in ipairs(readable) do
    if s == srv then
      while true do
        local c = srv:accept()
        if not c then break end
        c:settimeout(0)
        add(recvt, recvi, c)
      end
    elseif recvi[s] then
      local data, err, partial = s:receive(65536)
      data = data or partial
      if data and #data > 0 then on_data(s, data) end
      if err and err ~= "timeout" and (recvi[s] or sendi[s]) then drop(s) end
    end
  end
  for _, c in ipairs(writable) do
    if sendi[c] then
      local data = outbuf[c]
      local i, err, last = c:send(data)
      if i == #data then
        outbuf[c] = nil
        del(sendt, sendi, c)
        if closing[c] then drop(c) else add(recvt, recvi, c) end
      elseif err == "timeout" then
        outbuf[c] = data:sub(last + 1)
      else
        drop(c)
      end
    end
  end
end
