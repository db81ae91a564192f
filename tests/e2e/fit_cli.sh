#!/usr/bin/env bash
# retort fit end to end: synthetic results CSVs from known laws → fit.json with the documented
# keys and coefficients near the truth; bad inputs give the documented exit codes.
source "$(dirname "$0")/lib.sh"

# Supervised runs from L = 1.7 + 400/N^0.34 + 2000/D^0.37 (0.3% noise), on IsoFLOP budgets,
# plus distilled students of the same sizes from three teachers.
python3 - <<'PY'
import math, random
random.seed(1)
law = lambda N, D: 1.7 + 400 * N ** -0.34 + 2000 * D ** -0.37
a = 0.37 / (0.34 + 0.37)
G = (0.34 * 400 / (0.37 * 2000)) ** (1 / 0.71)
with open("results.csv", "w") as f:
    f.write("name,N,D,C,loss\n")
    for C in (1e18, 3e18, 1e19, 3e19, 1e20):
        for k in (-0.6, -0.3, 0.0, 0.3, 0.6):
            N = G * (C / 6) ** a * 10 ** k
            D = C / (6 * N)
            f.write(f"r{C:g}_{k},{N:.6g},{D:.6g},{C:g},{law(N, D) * math.exp(random.gauss(0, 0.003)):.6f}\n")
with open("distill.csv", "w") as f:
    f.write("N,D,teacher_loss,loss\n")
    for N in (3e7, 1e8, 3e8, 1e9):
        for D in (1e9, 5e9, 2.5e10):
            for LT in (2.0, 2.5, 3.2):
                Ls = law(N, D)
                gap = (1 + (LT / (Ls * 1.1)) ** (1 / 0.3)) ** (-3 * 0.3)
                L = LT + LT ** -2 * gap * (2000 * N ** -0.35 + 8000 * D ** -0.4) ** 0.8
                f.write(f"{N:g},{D:g},{LT},{L * math.exp(random.gauss(0, 0.002)):.6f}\n")
PY

retort fit results.csv --no-plot --budgets 1e21,1e22 --bootstrap 4 --out sup/fit.json > sup.txt
grep -q "Approach 3" sup.txt || fail "no summary line"
for k in E A B alpha beta gamma a b G intervals compute_optimal residuals data; do
  [ "$(json sup/fit.json "'$k' in j")" = True ] || fail "fit.json lacks key $k"
done
[ "$(json sup/fit.json "abs(j['alpha'] - 0.34) < 0.03 and abs(j['beta'] - 0.37) < 0.03 and abs(j['E'] - 1.7) < 0.05")" = True ] \
  || fail "supervised fit off: $(json sup/fit.json "(j['E'], j['alpha'], j['beta'])")"
[ "$(json sup/fit.json "j['gamma'] == 1 and len(j['compute_optimal']) == 2 and 'lo' in j['intervals']['alpha']")" = True ] \
  || fail "gamma / budgets / intervals"
echo "ok: approach3 $(json sup/fit.json "(round(j['E'],3), round(j['alpha'],3), round(j['beta'],3))")"

retort fit results.csv --no-plot --method approach2 --out a2/fit.json > /dev/null
[ "$(json a2/fit.json "abs(j['a'] - 0.37/0.71) < 0.02 and len(j['isoflop_budgets']) == 5")" = True ] \
  || fail "approach2 a=$(json a2/fit.json "j['a']")"
echo "ok: approach2 a=$(json a2/fit.json "round(j['a'],4)")"

retort fit results.csv --no-plot --form busbridge --out bb/fit.json > /dev/null
[ "$(json bb/fit.json "j['form'] == 'busbridge' and j['delta'] == 1e-4 and 0.05 <= j['gamma'] <= 5")" = True ] \
  || fail "busbridge form"

retort fit distill.csv --no-plot --law distillation --supervised sup/fit.json --out dist/fit.json > /dev/null
for k in c0 c1 f1 d1 A B alpha beta gamma supervised; do
  [ "$(json dist/fit.json "'$k' in j")" = True ] || fail "distillation fit.json lacks key $k"
done
[ "$(json dist/fit.json "j['rms_log_residual'] < 0.01")" = True ] || fail "distillation fit residuals"
echo "ok: distillation c0=$(json dist/fit.json "round(j['c0'],3)")"

# Runs that read their data more than once (retort collect's data_epochs): a warning naming
# them, or left out with --max-data-epochs (an empty field is kept).
awk -F, 'NR == 1 {print $0 ",data_epochs"; next}
         {print $0 "," (NR == 2 ? 2.5 : NR == 3 ? 1.5 : NR == 4 ? "" : 0.5)}' results.csv > epochs.csv
retort fit epochs.csv --no-plot --out ep/fit.json > /dev/null 2> ep.err
grep -q "warning: 2 of 25 rows read their data more than once (line 2: 2.5x, line 3: 1.5x)" ep.err \
  || fail "no repeated-data warning: $(cat ep.err)"
[ "$(json ep/fit.json "j['n_points'] == 25 and j['data']['data_epochs'][2] is None")" = True ] || fail "fit.json data_epochs"
retort fit epochs.csv --no-plot --max-data-epochs 1 --out ep1/fit.json > /dev/null 2> ep1.err
grep -q "leaves out 2 rows (line 2: 2.5x, line 3: 1.5x)" ep1.err || fail "no left-out line: $(cat ep1.err)"
[ "$(json ep1/fit.json "j['n_points'] == 23 and j['dropped']['line'] == [2, 3] and j['max_data_epochs'] == 1")" = True ] \
  || fail "--max-data-epochs 1 did not leave out lines 2 and 3"
expect_fail 2 "max-data-epochs: results.csv has no data_epochs column" retort fit results.csv --no-plot --max-data-epochs 1
sed 's/,$/,3/' epochs.csv > all_over.csv
expect_fail 2 "max-data-epochs 0.1 leaves out all 25 rows" retort fit all_over.csv --no-plot --max-data-epochs 0.1

# Plots, when matplotlib is there (never fails the fit).
retort fit results.csv --method approach2 --out plots/fit.json > plots.txt
if grep -q "plots skipped" plots.txt; then
  echo "note: $(grep 'plots skipped' plots.txt)"
else
  [ -s plots/isoflop.png ] && [ -s plots/n_opt_trend.png ] || fail "PNG plots missing"
fi

# --- errors ---
printf 'N,D,loss\n1e8,2e9,3.1\n1e8,abc,3.0\n' > bad.csv
expect_fail 1 "bad.csv:3: column 'D': 'abc' is not a finite number" retort fit bad.csv --no-plot
printf 'N,D,loss\n-1e8,2e9,3.1\n' > neg.csv
expect_fail 1 "neg.csv:2: column 'N': -1e8 must be positive" retort fit neg.csv --no-plot
expect_fail 1 "missing.csv: cannot read results file" retort fit missing.csv --no-plot
expect_fail 2 "results.csv: no column 'params' \(set it with --col-n" retort fit results.csv --col-n params --no-plot
expect_fail 2 "form must be chinchilla or busbridge" retort fit results.csv --form kaplan --no-plot
expect_fail 2 "law distillation needs --supervised" retort fit distill.csv --law distillation --no-plot
python3 -c "import json; j = json.load(open('sup/fit.json')); j['alpha'] = 'x'; json.dump(j, open('badsup.json', 'w'))"
expect_fail 2 "badsup.json: key 'alpha'" retort fit distill.csv --no-plot --law distillation --supervised badsup.json
echo '{"law": 3}' > notsup.json
expect_fail 2 "notsup.json: --supervised needs the fit.json of a supervised" \
  retort fit distill.csv --no-plot --law distillation --supervised notsup.json
expect_fail 2 "usage error" retort fit results.csv --delta abc
head -4 results.csv > thin.csv
expect_fail 1 "IsoFLOP budget C ≈ 1e\+18 \(lines 2, 3, 4\) has 3 distinct|needs at least 2 compute budgets" \
  retort fit thin.csv --method approach2 --no-plot
printf 'name,N,D,C,loss\nx,1e8,1e9,6e17,3\ny,2e8,5e8,6e17,3\nz,1e8,1e10,6e18,2.9\nw,2e8,5e9,6e18,2.8\nv,4e8,2.5e9,6e18,2.9\n' > twob.csv
expect_fail 1 "IsoFLOP budget C ≈ 6e\+17 \(lines 2, 3\) has 2 distinct model size" retort fit twob.csv --method approach2 --no-plot
echo "PASS"
