for c in /tmp/cmp/bgsnap.core /tmp/cmp/gcore.$PID; do echo "== gdb $c"; gdb -batch -nx -ex 'info threads' $B $c 2>&1 | grep -E "^\*? +[0-9]+ +LWP|^Core was"; done
ask quit >/dev/null
