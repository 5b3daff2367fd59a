#!/usr/bin/env bash
# Shared by scripts/demo.sh and scripts/test.sh: make sure the virtual environment exists
# and is up to date with the package metadata, and (when asked) that the system libraries
# for a virtual screen are present. Sourced, not run.

# The environment is (re)built when it is missing, when its set-up did not finish, or when
# the package metadata (pyproject.toml; setup.cfg too, should one come back) or
# scripts/setup.sh changed since it was built.
n2s_stamp() {
    local f
    for f in setup.cfg pyproject.toml scripts/setup.sh; do
        [ -f "$f" ] && cat "$f"
    done | sha256sum | cut -d' ' -f1
}

n2s_ensure_venv() {
    local venv=${VENV:-.venv}
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.n2s-ready" 2>/dev/null)" != "$(n2s_stamp)" ]; then
        echo "setting up $venv (first run, or the package metadata changed)"
        bash scripts/setup.sh
        n2s_stamp > "$venv/.n2s-ready"
    fi
}

# Xvfb and the X/GL libraries Qt needs, from the system's package manager when missing.
N2S_QT_DEBS="xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0
 libxcb-xfixes0 libxcb-xkb1 libdbus-1-3 libfontconfig1 libglib2.0-0"

n2s_ensure_screen_libs() {
    if command -v xvfb-run >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q libxcb-cursor; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "note: xvfb-run or Qt's X libraries are missing and there is no apt-get;" \
             "install Xvfb and libxcb-cursor0 with your package manager for the GUI tests" >&2
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
            echo "note: run as root (or install sudo) to install Xvfb and Qt's X libraries" >&2
            return 0
        fi
    fi
    echo "installing Xvfb and Qt's X libraries (apt-get)"
    # shellcheck disable=SC2086
    ($sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        $N2S_QT_DEBS >/dev/null) || echo "warning: could not install the Xvfb/Qt libraries" >&2
}
