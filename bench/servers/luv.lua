-- luv peer: libuv through callbacks (uv.new_tcp, listen, read_start, write).
local uv = require "luv"
local common = dofile(arg[0]:gsub("[^/]*$", "") .. "common.lua")
local mode, port = common.args()
local RESP, RESP_CLOSE, wants_close = common.RESP, common.RESP_CLOSE, common.wants_close
local HIGH = 2 ^ 20 -- stop reading while more than this waits to be written

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", port))
assert(server:listen(4096, function(err)
  if err then return end
  local c = uv.new_tcp()
  if not server:accept(c) then c:close() return end
  local function close() if not c:is_closing() then c:close() end end
  local inbuf = ""
  local on_read
  local function send(data)
    c:write(data)
    if c:get_write_queue_size() > HIGH then -- back-pressure
      c:read_stop()
      c:write("", function() if not c:is_closing() then c:read_start(on_read) end end)
    end
  end
  if mode == "echo" then
    on_read = function(rerr, data)
      if rerr or not data then return close() end
      send(data)
    end
  else
    on_read = function(rerr, data)
      if rerr or not data then return close() end
      local buf = inbuf .. data
      local out, pos = {}, 1
      while true do
        local e = buf:find("\r\n\r\n", pos, true)
        if not e then break end
        local head = buf:sub(pos, e + 3)
        pos = e + 4
        if wants_close(head) then
          c:read_stop()
          out[#out + 1] = RESP_CLOSE
          c:write(table.concat(out), close)
          return
        end
        out[#out + 1] = RESP
      end
      inbuf = buf:sub(pos)
      if #out > 0 then send(table.concat(out)) end
    end
  end
  c:read_start(on_read)
end))
common.announce(server:getsockname().port)
uv.run()
