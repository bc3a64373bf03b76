namespace OnnxOutlierTools.Import.Planted;

/// <summary>What <see cref="DecoderTrace"/> keeps of one window besides the logits.</summary>
[Flags]
public enum TraceParts
{
    None = 0,
    /// <summary>The residual stream after every block, [layers][tokens][dim].</summary>
    BlockOutputs = 1,
    /// <summary>The down-projection input y6 = SiLU(gate) * up of every block, [layers][tokens][hidden].</summary>
    DownInputs = 2,
    /// <summary>The FFN-norm output (gate/up input) of every block, [layers][tokens][dim].</summary>
    FfnNormOutputs = 4,
    /// <summary>Attention probabilities, [layers][heads][query][key] (key &lt;= query).</summary>
    AttentionProbabilities = 8,
    /// <summary>The attention output before o_proj (the o-projection input), [layers][tokens][heads*head_size].</summary>
    AttentionOutputs = 16,
    All = BlockOutputs | DownInputs | FfnNormOutputs | AttentionProbabilities | AttentionOutputs,
}

/// <summary>The intermediate tensors of one window (arrays are null for parts not asked for).</summary>
public sealed class WindowTrace
{
    internal WindowTrace() { }

    public required double[][] Logits { get; init; }
    public double[][][]? BlockOutputs { get; init; }
    public double[][][]? DownInputs { get; init; }
    public double[][][]? FfnNormOutputs { get; init; }
    public double[][][][]? AttentionProbabilities { get; init; }
    public double[][][]? AttentionOutputs { get; init; }
}

/// <summary>
/// A float64 forward pass of a whole window at once (causal, positions 0..n-1, no cache) that keeps the
/// intermediate tensors the planted-outlier ground truth is stated on. Same arithmetic as
/// <see cref="Llama2cReference"/> (run.c), written independently of it so each checks the other.
/// </summary>
public sealed class DecoderTrace
{
    private readonly DecoderConfig _c;
    private readonly double[] _embedding, _classifier, _finalNorm;
    private readonly double[][] _attNorm, _wq, _wk, _wv, _wo, _ffnNorm, _w1, _w2, _w3;
    private readonly double[] _freq;

    public DecoderTrace(DecoderWeights weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        _c = weights.Config;
        _embedding = Widen(weights.TokenEmbedding);
        _classifier = Widen(weights.Classifier);
        _finalNorm = Widen(weights.FinalNorm);
        var layers = weights.Layers;
        _attNorm = layers.Select(l => Widen(l.AttentionNorm)).ToArray();
        _wq = layers.Select(l => Widen(l.Wq)).ToArray();
        _wk = layers.Select(l => Widen(l.Wk)).ToArray();
        _wv = layers.Select(l => Widen(l.Wv)).ToArray();
        _wo = layers.Select(l => Widen(l.Wo)).ToArray();
        _ffnNorm = layers.Select(l => Widen(l.FfnNorm)).ToArray();
        _w1 = layers.Select(l => Widen(l.W1)).ToArray();
        _w2 = layers.Select(l => Widen(l.W2)).ToArray();
        _w3 = layers.Select(l => Widen(l.W3)).ToArray();
        _freq = Enumerable.Range(0, _c.HeadSize / 2).Select(j => Rope.Frequency(_c, j)).ToArray();
    }

    public DecoderConfig Config => _c;

    public WindowTrace Run(IReadOnlyList<int> tokens, TraceParts parts = TraceParts.None)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        int n = tokens.Count, D = _c.Dim, L = _c.Layers, Hd = _c.HiddenDim, hs = _c.HeadSize, kvDim = _c.KvDim;
        if (n == 0 || n > _c.MaxSeqLen) throw new ArgumentException($"window of {n} tokens; 1..{_c.MaxSeqLen} allowed", nameof(tokens));
        var x = new double[n][];
        for (int t = 0; t < n; t++)
        {
            if ((uint)tokens[t] >= (uint)_c.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), $"token {tokens[t]} outside vocabulary {_c.VocabSize}");
            x[t] = new ReadOnlySpan<double>(_embedding, tokens[t] * D, D).ToArray();
        }
        var blockOut = parts.HasFlag(TraceParts.BlockOutputs) ? new double[L][][] : null;
        var downIn = parts.HasFlag(TraceParts.DownInputs) ? new double[L][][] : null;
        var ffnOut = parts.HasFlag(TraceParts.FfnNormOutputs) ? new double[L][][] : null;
        var probs = parts.HasFlag(TraceParts.AttentionProbabilities) ? new double[L][][][] : null;
        var attnOut = parts.HasFlag(TraceParts.AttentionOutputs) ? new double[L][][] : null;
        var y = new double[D];
        var q = new double[n][];
        var k = new double[n][];
        var v = new double[n][];
        var mix = new double[D];
        var delta = new double[D];
        var gate = new double[Hd];
        var up = new double[Hd];
        double scale = 1.0 / Math.Sqrt(hs);
        for (int l = 0; l < L; l++)
        {
            for (int t = 0; t < n; t++)
            {
                RmsNorm(y, x[t], _attNorm[l]);
                q[t] = MatVec(_wq[l], y, D);
                k[t] = MatVec(_wk[l], y, kvDim);
                v[t] = MatVec(_wv[l], y, kvDim);
                Rotate(q[t], t);
                Rotate(k[t], t);
            }
            if (probs is not null) probs[l] = new double[_c.Heads][][];
            if (attnOut is not null) attnOut[l] = new double[n][];
            var scores = new double[n];
            var attended = new double[n][];
            for (int t = 0; t < n; t++)
            {
                Array.Clear(mix);
                for (int h = 0; h < _c.Heads; h++)
                {
                    int qOff = h * hs, kvOff = h / _c.QueriesPerKvHead * hs;
                    for (int s = 0; s <= t; s++)
                    {
                        double dot = 0;
                        for (int i = 0; i < hs; i++) dot += q[t][qOff + i] * k[s][kvOff + i];
                        scores[s] = dot * scale;
                    }
                    Softmax(scores.AsSpan(0, t + 1));
                    for (int s = 0; s <= t; s++)
                        for (int i = 0; i < hs; i++) mix[qOff + i] += scores[s] * v[s][kvOff + i];
                    if (probs is not null)
                    {
                        probs[l][h] ??= new double[n][];
                        probs[l][h][t] = scores.AsSpan(0, t + 1).ToArray();
                    }
                }
                if (attnOut is not null) attnOut[l][t] = (double[])mix.Clone();
                attended[t] = MatVec(_wo[l], mix, D);
            }
            if (ffnOut is not null) ffnOut[l] = new double[n][];
            if (downIn is not null) downIn[l] = new double[n][];
            for (int t = 0; t < n; t++)
            {
                for (int i = 0; i < D; i++) x[t][i] += attended[t][i];
                RmsNorm(y, x[t], _ffnNorm[l]);
                if (ffnOut is not null) ffnOut[l][t] = (double[])y.Clone();
                MatVec(_w1[l], y, gate);
                MatVec(_w3[l], y, up);
                for (int i = 0; i < Hd; i++) gate[i] = gate[i] / (1.0 + Math.Exp(-gate[i])) * up[i];
                if (downIn is not null) downIn[l][t] = (double[])gate.Clone();
                MatVec(_w2[l], gate, delta);
                for (int i = 0; i < D; i++) x[t][i] += delta[i];
            }
            if (blockOut is not null) blockOut[l] = x.Select(row => (double[])row.Clone()).ToArray();
        }
        var logits = new double[n][];
        for (int t = 0; t < n; t++)
        {
            RmsNorm(y, x[t], _finalNorm);
            logits[t] = MatVec(_classifier, y, _c.VocabSize);
        }
        return new WindowTrace()
        {
            Logits = logits,
            BlockOutputs = blockOut,
            DownInputs = downIn,
            FfnNormOutputs = ffnOut,
            AttentionProbabilities = probs,
            AttentionOutputs = attnOut,
        };
    }

    /// <summary>Sum of -log p(token[t+1] | tokens[..t]) over t = 0..n-2, and the count of scored tokens.</summary>
    public (double SumNll, int Count) Nll(IReadOnlyList<int> tokens)
    {
        var logits = Run(tokens).Logits;
        double sum = 0;
        for (int t = 0; t + 1 < tokens.Count; t++) sum += NegativeLogLikelihood(logits[t], tokens[t + 1]);
        return (sum, tokens.Count - 1);
    }

    internal static double NegativeLogLikelihood(ReadOnlySpan<double> logits, int target)
    {
        double max = double.NegativeInfinity;
        foreach (double z in logits) max = Math.Max(max, z);
        double sum = 0;
        foreach (double z in logits) sum += Math.Exp(z - max);
        return Math.Log(sum) + max - logits[target];
    }

    private void Rotate(double[] vec, int pos)
    {
        int hs = _c.HeadSize, half = hs / 2;
        for (int h = 0; h < vec.Length / hs; h++)
            for (int j = 0; j < half; j++)
            {
                int a = h * hs + (_c.RopeLayout == RopeLayout.InterleavedPairs ? 2 * j : j);
                int b = h * hs + (_c.RopeLayout == RopeLayout.InterleavedPairs ? 2 * j + 1 : j + half);
                double angle = pos * _freq[j], cr = Math.Cos(angle), ci = Math.Sin(angle);
                double v0 = vec[a], v1 = vec[b];
                vec[a] = v0 * cr - v1 * ci;
                vec[b] = v0 * ci + v1 * cr;
            }
    }

    private void RmsNorm(double[] o, double[] x, double[] gain)
    {
        double ss = 0;
        foreach (double value in x) ss += value * value;
        double inv = 1.0 / Math.Sqrt(ss / x.Length + _c.NormEps);
        for (int i = 0; i < x.Length; i++) o[i] = gain[i] * (inv * x[i]);
    }

    private static void Softmax(Span<double> values)
    {
        double max = double.NegativeInfinity;
        foreach (double value in values) max = Math.Max(max, value);
        double sum = 0;
        for (int i = 0; i < values.Length; i++) { values[i] = Math.Exp(values[i] - max); sum += values[i]; }
        for (int i = 0; i < values.Length; i++) values[i] /= sum;
    }

    private static double[] MatVec(double[] w, double[] x, int rows)
    {
        var result = new double[rows];
        MatVec(w, x, result);
        return result;
    }

    // W [rows, in] row-major times x [in].
    private static void MatVec(double[] w, double[] x, double[] result)
    {
        int n = x.Length;
        for (int r = 0; r < result.Length; r++)
            result[r] = System.Numerics.Tensors.TensorPrimitives.Dot(new ReadOnlySpan<double>(w, r * n, n), x);
    }

    private static double[] Widen(float[] values) => Array.ConvertAll(values, f => (double)f);
}
