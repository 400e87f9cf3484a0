#!/bin/sh
# ipmi_sim chassis control: "get PARM..." prints PARM:VALUE lines; "set PARM VAL ..." stores.
dir=$(dirname "$0")
op=$1; shift
case $op in
get) for p in "$@"; do
       case $p in
       power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)" ;;
       boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)" ;;
       *) exit 1 ;;
       esac
     done ;;
set) while [ $# -ge 2 ]; do echo "$2" > "$dir/$1"; echo "set $1 $2" >> "$dir/log"; shift 2; done ;;
*) exit 1 ;;
esac
