using System.Globalization;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.Verification;

/// <summary>How far a rewrite meant to be exact may move an output: |rewritten - original| &lt;= Absolute + Relative *
/// max|original| over the output (a norm-wise bound: element-wise relative error is meaningless near zero, and a wrong
/// scale moves outputs by a sizeable fraction of their range, far above these bounds).
/// <para>Defaults by the precision of the model's weights: FLOAT 1e-4 (a fold rounds each weight once, 2^-24 relative;
/// the error then passes through every block and the softmaxes: 1e-5 to 3e-5 of the range measured on the fixtures),
/// FLOAT16 1e-2 (2^-11 per rounding, and ORT's fp16 kernels accumulate differently when a weight changes), BFLOAT16 4e-2
/// (2^-8 per rounding).</para></summary>
public sealed record ProofTolerance(double Absolute, double Relative)
{
    public static ProofTolerance Float32 { get; } = new(1e-5, 1e-4);
    public static ProofTolerance Float16 { get; } = new(1e-3, 1e-2);
    public static ProofTolerance BFloat16 { get; } = new(1e-2, 4e-2);

    public static ProofTolerance For(TensorDataType weights) => weights switch
    {
        TensorDataType.Float16 => Float16,
        TensorDataType.BFloat16 => BFloat16,
        _ => Float32,
    };

    /// <summary>The tolerance for the lowest-precision floating-point weights the model holds (by bytes).</summary>
    public static ProofTolerance For(Model model)
    {
        var bytes = new Dictionary<TensorDataType, long>();
        foreach (var graph in model.Graph.SelfAndSubgraphs())
            foreach (var init in graph.Initializers)
                if (init.ConstValue is { DataType: TensorDataType.Float or TensorDataType.Float16 or TensorDataType.BFloat16 } t && t.ElementCount > 1)
                    bytes[t.DataType] = bytes.GetValueOrDefault(t.DataType) + t.ByteLength;
        if (bytes.ContainsKey(TensorDataType.BFloat16)) return BFloat16;
        if (bytes.ContainsKey(TensorDataType.Float16)) return Float16;
        return Float32;
    }

    public double Bound(double referenceMaxAbs) => Absolute + Relative * referenceMaxAbs;
}

/// <summary>One output over every proof run: the largest deviation, the reference's range, and whether it is in bounds.</summary>
public sealed record OutputDeviation(string Output, double MaxAbsDiff, double ReferenceMaxAbs, long NaNMismatches, string? ShapeProblem, double Bound)
{
    /// <summary>max |diff| / max |original| (0 when both are 0).</summary>
    public double RelativeToRange => ReferenceMaxAbs > 0 ? MaxAbsDiff / ReferenceMaxAbs : MaxAbsDiff > 0 ? double.PositiveInfinity : 0;
    public bool Within => ShapeProblem is null && NaNMismatches == 0 && MaxAbsDiff <= Bound;

    public override string ToString() => ShapeProblem is not null ? $"{Output}: {ShapeProblem}" : string.Create(CultureInfo.InvariantCulture,
        $"{Output}: max |diff| {MaxAbsDiff:G3}, {RelativeToRange:G3} of max |x| {ReferenceMaxAbs:G4} (bound {Bound:G3}){(NaNMismatches > 0 ? $", {NaNMismatches} NaN mismatches" : "")}");
}

/// <summary>What the proof ran and found.</summary>
public sealed record ProofResult(string Rewrite, IReadOnlyList<OutputDeviation> Outputs, int Runs, ProofTolerance Tolerance)
{
    public bool Exact => Outputs.Count > 0 && Outputs.All(o => o.Within);
    public OutputDeviation? Worst => Outputs.Where(o => !o.Within).OrderByDescending(o => o.RelativeToRange).FirstOrDefault();
}

/// <summary>A rewrite meant to be exact is not: the output is not written (the CLI exits 3).</summary>
public sealed class NotEquivalentException(ProofResult result)
    : Exception($"{result.Rewrite} is not exact: {result.Worst?.ToString() ?? "no output was compared"}; nothing written")
{
    public ProofResult Result { get; } = result;
}

/// <summary>One proof run: what to feed each model. The rewritten model may take other inputs (the sink bias feeds
/// the text without its prefix), and <see cref="Align"/> maps an original output onto the rewritten one's positions
/// (null: compared as is).</summary>
public sealed record ProofCase(IReadOnlyList<TensorData> OriginalFeeds, IReadOnlyList<TensorData> RewrittenFeeds,
    Func<string, TensorData, TensorData>? Align = null);

/// <summary>The equivalence proof of an exact rewrite: the original and the rewritten model run on ONNX Runtime with the
/// same settings (device, optimization level) on the same calibration inputs, and every output of the rewritten model
/// is compared with the original's. Models are read from files, so the proof of a large model runs from its external
/// data like any other session.</summary>
public static class EquivalenceProof
{
    public static ProofResult Run(string rewrite, string originalPath, string rewrittenPath, IReadOnlyList<ProofCase> cases,
        ProofTolerance tolerance, SessionSettings? settings = null, IReadOnlyCollection<string>? outputs = null)
    {
        ArgumentNullException.ThrowIfNull(cases);
        if (cases.Count == 0) throw new ArgumentException("the proof needs at least one input", nameof(cases));
        settings ??= new SessionSettings { Device = ExecutionDevice.Cpu };
        using var original = SessionFactory.Open(originalPath, settings);
        using var rewritten = SessionFactory.Open(rewrittenPath, settings);
        var names = (outputs ?? rewritten.OutputNames).Where(original.OutputNames.Contains).ToList();
        if (names.Count == 0) throw new InvalidOperationException($"{rewrittenPath}: no output in common with {originalPath}");
        var worst = names.ToDictionary(n => n, n => (Abs: 0.0, Range: 0.0, NaN: 0L, Shape: (string?)null));
        foreach (var proofCase in cases)
        {
            var expected = original.Run(proofCase.OriginalFeeds, names);
            var actual = rewritten.Run(proofCase.RewrittenFeeds, names);
            for (int i = 0; i < names.Count; i++)
            {
                var reference = proofCase.Align is null ? expected[i] : proofCase.Align(names[i], expected[i]);
                var d = TensorComparison.Compare(reference, actual[i]);
                var w = worst[names[i]];
                double range = MaxAbs(reference);
                worst[names[i]] = (Math.Max(w.Abs, d.ShapeMatches ? d.MaxAbsDiff : double.PositiveInfinity), Math.Max(w.Range, range),
                    w.NaN + d.NaNMismatches, w.Shape ?? d.ShapeProblem);
            }
        }
        var deviations = names.Select(n => new OutputDeviation(n, worst[n].Abs, worst[n].Range, worst[n].NaN, worst[n].Shape, tolerance.Bound(worst[n].Range))).ToList();
        return new ProofResult(rewrite, deviations, cases.Count, tolerance);
    }

    /// <summary><see cref="Run"/>, then <see cref="NotEquivalentException"/> when an output is out of bounds.</summary>
    public static ProofResult Require(string rewrite, string originalPath, string rewrittenPath, IReadOnlyList<ProofCase> cases,
        ProofTolerance tolerance, SessionSettings? settings = null)
    {
        var result = Run(rewrite, originalPath, rewrittenPath, cases, tolerance, settings);
        return result.Exact ? result : throw new NotEquivalentException(result);
    }

    private static double MaxAbs(TensorData t)
    {
        if (t.ElementType is not (TensorDataType.Float or TensorDataType.Float16 or TensorDataType.BFloat16 or TensorDataType.Double)) return 0;
        double max = 0;
        foreach (double v in t.ToDoubleArray()) if (double.IsFinite(v) && Math.Abs(v) > max) max = Math.Abs(v);
        return max;
    }
}
