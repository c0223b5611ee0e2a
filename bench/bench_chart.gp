# bench_chart.gp: the benchmark chart, from the data file run_bench.py
# writes (bench/results/bench.dat with `make bench`):
#
#   gnuplot -e "dat='bench/results/bench.dat'; svg='bench.svg'; png='bench.png'" bench/bench_chart.gp
#
# One group of bars per benchmark row (top to bottom in table order), one bar
# per allocator, in two panels: left, time relative to mimalloc (mimalloc's
# median ops/s divided by the allocator's: 0.5 = twice as fast as mimalloc),
# with a whisker from the allocator's fastest to its slowest repetition;
# right, median peak RSS relative to mimalloc's.  Both on a log2 scale, bars
# drawn from 1 (mimalloc, the black line), lower is better.  Values beyond
# the axis are cut at its end and written there.  Each row's label ends with
# hakmem's standing against the best peer ([first], [tie], [behind]).

if (!exists("dat")) dat = "bench/results/bench.dat"
if (!exists("svg")) svg = "bench/results/bench.svg"
if (!exists("png")) png = "bench/results/bench.png"

allocs = system("sed -n 's/^# allocators: //p' '" . dat . "'")
ref = system("sed -n 's/^# reference: //p' '" . dat . "'")
heading = system("sed -n '1s/^# //p' '" . dat . "'")
na = words(allocs)
refidx = 0
do for [j = 1:na] { if (word(allocs, j) eq ref) { refidx = j } }
nb = na - (refidx > 0 ? 1 : 0)        # bars per row: all but the reference

set datafile missing "?"
stats dat index 1 using 1 nooutput
nrows = STATS_records

# bar slot (1..nb) of allocator j, and the y of its bar in row i (row i's
# group is centred on y = -i)
slot(j) = (refidx > 0 && j > refidx) ? j - 1 : j
bh = 0.84 / nb
bary(i, j) = -i + ((nb + 1) / 2.0 - slot(j)) * bh
half = bh * 0.42

color(n) = n eq "hakmem" ? "#d62728" : n eq "hakmem+counters" ? "#f4a3a3" : \
           n eq "system" ? "#8c8c8c" : n eq "mimalloc" ? "#000000" : \
           n eq "jemalloc" ? "#1f77b4" : n eq "tcmalloc" ? "#2ca02c" : "#9467bd"

xlo = 1.0 / 16
xhi = 16.0
clamp(v) = v < xlo ? xlo : v > xhi ? xhi : v
cut(v) = (v > xhi || v < xlo) ? sprintf("%.3g", v) : ""

W = 1500
H = 170 + 34 * nrows
top = 1.0 - 125.0 / H
bottom = 62.0 / H

set style fill solid 0.9 noborder
set style textbox opaque noborder margins 1, 0.5
set logscale x 2
set xrange [xlo:xhi]
set xtics ("1/16" 1.0/16, "1/8" 0.125, "1/4" 0.25, "1/2" 0.5, "1" 1, "2" 2, "4" 4, "8" 8, "16" 16)
set grid xtics lc rgb "#d0d0d0" lw 1 dt 3
set yrange [-nrows + 0.5 : 0.5]
set tmargin at screen top
set bmargin at screen bottom
set arrow 1 from 1, graph 0 to 1, graph 1 nohead lw 1.5 lc rgb "#000000" front
do for [i = 0:nrows - 2] {
    set arrow (10 + i) from graph 0, first (-i - 0.5) to graph 1, first (-i - 0.5) nohead lc rgb "#e4e4e4" back
}

# the key: one line above the panels, a swatch and a name per bar, then the
# reference line (drawn as objects in screen coordinates: gnuplot's own key
# would wrap to the width of one panel)
unset key
ky = top + 14.0 / H
kx = 0.25
do for [j = 1:na] {
    if (j != refidx) {
        set object (100 + j) rect from screen kx, screen ky to screen kx + 0.018, screen ky + 10.0 / H \
            fc rgb color(word(allocs, j)) fs solid 0.9 noborder
        set label (100 + j) word(allocs, j) at screen kx + 0.024, screen ky + 5.0 / H left font ",10"
        kx = kx + 0.03 + 0.0065 * strlen(word(allocs, j))
    }
}
set arrow 2 from screen kx + 0.009, screen ky - 3.0 / H to screen kx + 0.009, screen ky + 13.0 / H \
    nohead lw 1.5 lc rgb "#000000"
set label 2 ref . " = 1 (the reference)" at screen kx + 0.018, screen ky + 5.0 / H left font ",10"

do for [t = 1:2] {
    if (t == 1) {
        set terminal svg size W, H noenhanced font "sans,11" background "#ffffff"
        set output svg
    } else {
        set terminal pngcairo size W, H noenhanced font "sans,10" background "#ffffff"
        set output png
    }
    set multiplot title heading . "\n" . \
        "Left: time relative to " . ref . " (" . ref . "'s median ops/s / the allocator's; whiskers: fastest..slowest run).  " . \
        "Right: median peak RSS relative to " . ref . ".\n" . \
        "Log scale, bars from 1 = " . ref . " (black line): lower is better.  [first|tie|behind]: hakmem against the best peer of the row." \
        font ",11"

    # left panel: time, with the row labels and the key
    set lmargin at screen 0.25
    set rmargin at screen 0.615
    set ytics scale 0 font ",9" format "% h"
    set xlabel "time relative to " . ref . " (lower is better)"
    plot dat index 1 using (1):(-$1):ytic(2) with points ps 0 notitle, \
         for [j = 1:na] dat index 0 using (1):($2 == j && j != refidx ? bary($1, j) : NaN):(1):(clamp($3)):(bary($1, j) - half):(bary($1, j) + half) \
             with boxxyerror lc rgb color(word(allocs, j)) notitle, \
         for [j = 1:na] dat index 0 using (clamp($3)):($2 == j && j != refidx ? bary($1, j) : NaN):(clamp($4)):(clamp($5)) \
             with xerrorbars ps 0 lw 0.6 lc rgb "#404040" notitle, \
         for [j = 1:na] dat index 0 using (xhi / 1.001):($2 == j && j != refidx && $3 > xhi ? bary($1, j) : NaN):(cut($3)) \
             with labels boxed right font ",7" offset char -0.3, 0 notitle, \
         for [j = 1:na] dat index 0 using (xlo * 1.001):($2 == j && j != refidx && $3 < xlo ? bary($1, j) : NaN):(cut($3)) \
             with labels boxed left font ",7" offset char 0.3, 0 notitle

    # right panel: peak RSS, same rows, no labels
    set lmargin at screen 0.635
    set rmargin at screen 0.985
    set ytics format ""
    set ytics ()
    set xlabel "peak RSS relative to " . ref . " (lower is better)"
    plot for [j = 1:na] dat index 0 using (1):($2 == j && j != refidx ? bary($1, j) : NaN):(1):(clamp($6)):(bary($1, j) - half):(bary($1, j) + half) \
             with boxxyerror lc rgb color(word(allocs, j)) notitle, \
         for [j = 1:na] dat index 0 using (xhi / 1.001):($2 == j && j != refidx && $6 > xhi ? bary($1, j) : NaN):(cut($6)) \
             with labels boxed right font ",7" offset char -0.3, 0 notitle, \
         for [j = 1:na] dat index 0 using (xlo * 1.001):($2 == j && j != refidx && $6 < xlo ? bary($1, j) : NaN):(cut($6)) \
             with labels boxed left font ",7" offset char 0.3, 0 notitle
    unset multiplot
    set output
}
