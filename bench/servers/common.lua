-- Shared by the Lua peers: the HTTP responses (byte for byte those of
-- c_server.c) and the "Connection: close" test.
local M = {}
M.RESP = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
M.RESP_CLOSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
  .. "Connection: close\r\n\r\nHello, World!"
function M.wants_close(head)
  return head:lower():find("\nconnection:[^\n]*close") ~= nil
end
function M.args()
  local mode, port = arg[1], tonumber(arg[2] or "0")
  if mode ~= "http" and mode ~= "echo" or not port then
    io.stderr:write("usage: ", arg[0], " http|echo PORT\n")
    os.exit(2)
  end
  return mode, port
end
function M.announce(port)
  io.stdout:write("PORT ", port, "\n")
  io.stdout:flush()
end
return M
