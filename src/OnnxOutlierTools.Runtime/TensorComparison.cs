using System.Globalization;

namespace OnnxOutlierTools.Runtime;

/// <summary>How one output differs from its reference.</summary>
/// <param name="BitwiseEqual">Same element type, shape and bytes.</param>
/// <param name="ShapeMatches">Same element type and shape (values are compared only then).</param>
/// <param name="MaxAbsDiff">max |actual - expected|; 0 where both are the same infinity or both NaN;
/// +inf where exactly one is NaN or infinite.</param>
/// <param name="MaxRelError">max |actual - expected| / max(|expected|, |actual|) (0 when both are 0), in [0, 2].</param>
/// <param name="WorstIndex">Flat index of the largest absolute difference (-1 when none).</param>
/// <param name="NaNMismatches">Elements where exactly one side is NaN.</param>
public sealed record TensorDifference(string Name, bool BitwiseEqual, bool ShapeMatches, double MaxAbsDiff,
    double MaxRelError, long WorstIndex, long NaNMismatches, string? ShapeProblem)
{
    public override string ToString()
    {
        if (!ShapeMatches) return $"{Name}: {ShapeProblem}";
        if (BitwiseEqual) return $"{Name}: bitwise equal";
        string worst = WorstIndex >= 0 ? $" at element {WorstIndex}" : "";
        string nan = NaNMismatches > 0 ? $", {NaNMismatches} NaN mismatches" : "";
        return string.Create(CultureInfo.InvariantCulture, $"{Name}: max |diff| {MaxAbsDiff:G6}{worst}, max rel {MaxRelError:G6}{nan}");
    }
}

/// <summary>Compares outputs of two runs: bitwise equality (the proof of an exact rewrite) and
/// max absolute / relative error (for rewrites that are exact only in real arithmetic).</summary>
public static class TensorComparison
{
    public static bool BitwiseEqual(TensorData expected, TensorData actual) =>
        expected.Tensor.DataEquals(actual.Tensor);

    public static TensorDifference Compare(TensorData expected, TensorData actual)
    {
        string name = expected.Name == actual.Name ? expected.Name : $"{expected.Name}/{actual.Name}";
        if (expected.ElementType != actual.ElementType)
            return Mismatch(name, $"element type {expected.ElementType} vs {actual.ElementType}");
        if (!expected.Dims.SequenceEqual(actual.Dims))
            return Mismatch(name, $"shape [{string.Join(",", expected.Dims)}] vs [{string.Join(",", actual.Dims)}]");
        if (expected.Tensor.DataEquals(actual.Tensor)) return new TensorDifference(name, true, true, 0, 0, -1, 0, null);

        double[] e = expected.ToDoubleArray(), a = actual.ToDoubleArray();
        double maxAbs = 0, maxRel = 0;
        long worst = -1, nanMismatches = 0;
        for (int i = 0; i < e.Length; i++)
        {
            var (abs, rel, nan) = Difference(e[i], a[i]);
            if (nan) nanMismatches++;
            if (abs > maxAbs || (worst < 0 && abs > 0)) { maxAbs = abs; worst = i; }
            if (rel > maxRel) maxRel = rel;
        }
        return new TensorDifference(name, false, true, maxAbs, maxRel, worst, nanMismatches, null);
    }

    /// <summary>numpy.allclose semantics: same type and shape, |a - e| &lt;= atol + rtol * |e| for every
    /// element, NaN exactly where the reference has NaN, infinities equal.</summary>
    public static bool AllClose(TensorData expected, TensorData actual, double atol, double rtol)
    {
        if (expected.ElementType != actual.ElementType || !expected.Dims.SequenceEqual(actual.Dims)) return false;
        if (expected.Tensor.DataEquals(actual.Tensor)) return true;
        double[] e = expected.ToDoubleArray(), a = actual.ToDoubleArray();
        for (int i = 0; i < e.Length; i++)
        {
            if (double.IsNaN(e[i]) || double.IsNaN(a[i]))
            {
                if (double.IsNaN(e[i]) && double.IsNaN(a[i])) continue;
                return false;
            }
            if (e[i] == a[i]) continue;
            if (!(Math.Abs(a[i] - e[i]) <= atol + rtol * Math.Abs(e[i]))) return false;
        }
        return true;
    }

    /// <summary><see cref="AllClose(TensorData, TensorData, double, double)"/> for every expected output, matched by name.</summary>
    public static bool AllClose(IReadOnlyList<TensorData> expected, IReadOnlyList<TensorData> actual, double atol, double rtol) =>
        expected.Count == actual.Count && expected.All(e => actual.FirstOrDefault(a => a.Name == e.Name) is { } a && AllClose(e, a, atol, rtol));

    /// <summary>Compares outputs by name; every expected output must be present in <paramref name="actual"/>.</summary>
    public static OutputComparison Compare(IReadOnlyList<TensorData> expected, IReadOnlyList<TensorData> actual)
    {
        var byName = actual.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var results = new List<TensorDifference>(expected.Count);
        foreach (var e in expected)
            results.Add(byName.TryGetValue(e.Name, out var a) ? Compare(e, a) : Mismatch(e.Name, "missing from the actual outputs"));
        foreach (var a in actual)
            if (!expected.Any(e => e.Name == a.Name)) results.Add(Mismatch(a.Name, "not among the expected outputs"));
        return new OutputComparison(results);
    }

    private static (double Abs, double Rel, bool NaN) Difference(double e, double a)
    {
        bool eNaN = double.IsNaN(e), aNaN = double.IsNaN(a);
        if (eNaN || aNaN) return eNaN && aNaN ? (0, 0, false) : (double.PositiveInfinity, 2, true);
        if (e == a) return (0, 0, false);
        double abs = Math.Abs(a - e);
        if (double.IsInfinity(abs)) return (double.PositiveInfinity, 2, false);
        return (abs, abs / Math.Max(Math.Abs(e), Math.Abs(a)), false);
    }

    private static TensorDifference Mismatch(string name, string problem) =>
        new(name, false, false, double.PositiveInfinity, double.PositiveInfinity, -1, 0, problem);
}

/// <summary>Per-output differences of two runs.</summary>
public sealed class OutputComparison(IReadOnlyList<TensorDifference> outputs)
{
    public IReadOnlyList<TensorDifference> Outputs { get; } = outputs;
    public bool AllBitwiseEqual => Outputs.All(o => o.BitwiseEqual);
    public double MaxAbsDiff => Outputs.Count == 0 ? 0 : Outputs.Max(o => o.MaxAbsDiff);
    public double MaxRelError => Outputs.Count == 0 ? 0 : Outputs.Max(o => o.MaxRelError);

    /// <summary>One line per output that is not bitwise equal (or "all N outputs bitwise equal").</summary>
    public override string ToString() => AllBitwiseEqual
        ? $"all {Outputs.Count} outputs bitwise equal"
        : string.Join("; ", Outputs.Where(o => !o.BitwiseEqual));
}
