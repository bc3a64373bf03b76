using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.Measurement;

/// <summary>Runs calibration windows through one session and returns the next-token logits of every position, fed as
/// calibration feeds them (<see cref="FeedPlan"/>: masks, positions, empty caches, GroupQueryAttention lengths); a
/// one-token step model runs token by token with its present caches fed back.</summary>
public sealed class NextTokenLogits
{
    private readonly ModelSession _session;
    private readonly FeedPlan _plan;

    public NextTokenLogits(ModelSession session, string? logitsOutput, string? tokenInput)
    {
        _session = session;
        _plan = FeedPlan.Create(session.ModelPath, session.Inputs, session.OutputNames, tokenInput);
        Output = logitsOutput ?? session.OutputNames.FirstOrDefault(n => n == "logits")
            ?? session.OutputNames.FirstOrDefault(n => n.Contains("logits", StringComparison.OrdinalIgnoreCase))
            ?? throw new MitigationInputException($"{session.ModelPath}: no 'logits' output to compare (outputs: {string.Join(", ", session.OutputNames)})");
        if (!session.OutputNames.Contains(Output)) throw new MitigationInputException($"{session.ModelPath}: has no output '{Output}'");
    }

    public string Output { get; }
    public bool StepMode => _plan.StepMode;

    /// <summary>Logits of <paramref name="rows"/> windows of one length, [rows * length, vocab] row-major, and the vocabulary size.</summary>
    public (float[] Logits, int Vocab) Run(IReadOnlyList<int[]> rows)
    {
        int length = rows[0].Length;
        if (rows.Any(r => r.Length != length)) throw new ArgumentException("a batch holds windows of one length");
        if (_plan.FixedSequenceLength is long fixedLength && fixedLength != 1 && fixedLength != length)
            throw new MitigationInputException($"{_session.ModelPath}: the model takes exactly {fixedLength} tokens per sequence, the windows have {length}");
        if (_plan.StepMode)
        {
            if (rows.Count != 1) throw new ArgumentException("a step model runs one window at a time");
            return Steps(rows[0]);
        }
        var ids = new int[rows.Count * length];
        for (int r = 0; r < rows.Count; r++) rows[r].CopyTo(ids, r * length);
        using var outputs = _session.RunWithoutCopy(_plan.Build(rows.Count, length, ids, 0, null), [Output]);
        return Read(outputs[Output], rows.Count * length);
    }

    private (float[] Logits, int Vocab) Steps(int[] ids)
    {
        var requested = new[] { Output }.Concat(_plan.PresentToPast.Keys).ToArray();
        Dictionary<string, TensorData>? cache = null;
        float[]? all = null;
        int vocab = 0;
        for (int t = 0; t < ids.Length; t++)
        {
            using var outputs = _session.RunWithoutCopy(_plan.Build(1, 1, ids.AsSpan(t, 1), t, cache), requested);
            var (step, v) = Read(outputs[Output], 1);
            all ??= new float[(long)ids.Length * v];
            vocab = v;
            step.CopyTo(all, (long)t * v);
            cache = _plan.PresentToPast.ToDictionary(p => p.Value, p => new TensorData(p.Value, outputs[p.Key].ToArrayTensor()));
        }
        return (all ?? [], vocab);
    }

    private (float[] Logits, int Vocab) Read(Tensor logits, int positions)
    {
        if (logits.Dims.Count < 2 || logits.Dims[^1] <= 0 || logits.ElementCount != positions * logits.Dims[^1])
            throw new MitigationInputException($"{_session.ModelPath}: output '{Output}' is [{string.Join(", ", logits.Dims)}], not one row of logits per fed position ({positions})");
        return (logits.ToSingleArray(), checked((int)logits.Dims[^1]));
    }
}
