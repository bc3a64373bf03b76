namespace OnnxOutlierTools.Import;

/// <summary>
/// A float64 port of llama2.c run.c's forward pass: one token at a time with a key/value cache.
/// It is the independent reference the ONNX writers are tested against; it shares no code with them
/// except <see cref="DecoderWeights"/>. Weights are widened to double once; every operation
/// (RMSNorm, RoPE, attention, SwiGLU, classifier) runs in double.
/// </summary>
public sealed class Llama2cReference
{
    private readonly DecoderConfig _c;
    private readonly double[] _embedding, _classifier, _finalNorm;
    private readonly Layer[] _layers;
    private readonly double[][] _keyCache, _valueCache; // per layer: [MaxSeqLen, kv_dim]
    private readonly double[] _freq;

    private sealed record Layer(double[] AttNorm, double[] Wq, double[] Wk, double[] Wv, double[] Wo,
        double[] FfnNorm, double[] W1, double[] W2, double[] W3);

    public Llama2cReference(DecoderWeights weights)
    {
        _c = weights.Config;
        _embedding = Widen(weights.TokenEmbedding);
        _classifier = ReferenceEquals(weights.Classifier, weights.TokenEmbedding) ? _embedding : Widen(weights.Classifier);
        _finalNorm = Widen(weights.FinalNorm);
        _layers = weights.Layers.Select(l => new Layer(Widen(l.AttentionNorm), Widen(l.Wq), Widen(l.Wk), Widen(l.Wv),
            Widen(l.Wo), Widen(l.FfnNorm), Widen(l.W1), Widen(l.W2), Widen(l.W3))).ToArray();
        _keyCache = _layers.Select(_ => new double[(long)_c.MaxSeqLen * _c.KvDim]).ToArray();
        _valueCache = _layers.Select(_ => new double[(long)_c.MaxSeqLen * _c.KvDim]).ToArray();
        _freq = Enumerable.Range(0, _c.HeadSize / 2).Select(j => Math.Pow(_c.RopeTheta, -2.0 * j / _c.HeadSize)).ToArray();
    }

    public DecoderConfig Config => _c;

    /// <summary>Position of the next token (the number of tokens in the cache).</summary>
    public int Position { get; private set; }

    /// <summary>Empties the key/value cache.</summary>
    public void Reset() => Position = 0;

    /// <summary>Logits for every position of <paramref name="tokens"/> (cache reset first).</summary>
    public double[][] Forward(IReadOnlyList<int> tokens)
    {
        Reset();
        var result = new double[tokens.Count][];
        for (int i = 0; i < tokens.Count; i++) result[i] = Step(tokens[i]);
        return result;
    }

    /// <summary>Convenience: a fresh reference over <paramref name="weights"/>, run on <paramref name="tokens"/>.</summary>
    public static double[][] Forward(DecoderWeights weights, IReadOnlyList<int> tokens) => new Llama2cReference(weights).Forward(tokens);

    /// <summary>Greedy (argmax) continuation of <paramref name="prompt"/> by <paramref name="newTokens"/> tokens.</summary>
    public int[] Greedy(IReadOnlyList<int> prompt, int newTokens)
    {
        var logits = Forward(prompt)[^1];
        var result = new int[newTokens];
        for (int i = 0; i < newTokens; i++)
        {
            result[i] = ArgMax(logits);
            if (i + 1 < newTokens) logits = Step(result[i]);
        }
        return result;
    }

    /// <summary>run.c forward(token, pos) at the current position; returns the logits and advances.</summary>
    public double[] Step(int token)
    {
        int pos = Position;
        if (pos >= _c.MaxSeqLen) throw new InvalidOperationException($"sequence longer than max_seq_len {_c.MaxSeqLen}");
        if ((uint)token >= (uint)_c.VocabSize) throw new ArgumentOutOfRangeException(nameof(token), $"token {token} outside vocabulary {_c.VocabSize}");
        int dim = _c.Dim, hs = _c.HeadSize, kvDim = _c.KvDim, hidden = _c.HiddenDim, kvMul = _c.QueriesPerKvHead;
        var x = new double[dim];
        Array.Copy(_embedding, (long)token * dim, x, 0, dim);
        var xb = new double[dim];
        var q = new double[dim];
        var att = new double[pos + 1];
        var hb = new double[hidden];
        var hb2 = new double[hidden];
        var xb2 = new double[dim];

        for (int l = 0; l < _layers.Length; l++)
        {
            var w = _layers[l];
            RmsNorm(xb, x, w.AttNorm);
            var kRow = new Span<double>(_keyCache[l], pos * kvDim, kvDim);
            var vRow = new Span<double>(_valueCache[l], pos * kvDim, kvDim);
            MatMul(q, xb, w.Wq, dim, dim);
            MatMul(kRow, xb, w.Wk, dim, kvDim);
            MatMul(vRow, xb, w.Wv, dim, kvDim);
            Rotate(q, pos);
            Rotate(kRow, pos);

            Array.Clear(xb);
            double scale = 1.0 / Math.Sqrt(hs);
            for (int h = 0; h < _c.Heads; h++)
            {
                int qOff = h * hs, kvOff = h / kvMul * hs;
                for (int t = 0; t <= pos; t++)
                {
                    double score = 0;
                    for (int i = 0; i < hs; i++) score += q[qOff + i] * _keyCache[l][t * kvDim + kvOff + i];
                    att[t] = score * scale;
                }
                Softmax(att);
                for (int t = 0; t <= pos; t++)
                    for (int i = 0; i < hs; i++) xb[qOff + i] += att[t] * _valueCache[l][t * kvDim + kvOff + i];
            }
            MatMul(xb2, xb, w.Wo, dim, dim);
            for (int i = 0; i < dim; i++) x[i] += xb2[i];

            RmsNorm(xb, x, w.FfnNorm);
            MatMul(hb, xb, w.W1, dim, hidden);
            MatMul(hb2, xb, w.W3, dim, hidden);
            for (int i = 0; i < hidden; i++) hb[i] = hb[i] / (1.0 + Math.Exp(-hb[i])) * hb2[i];
            MatMul(xb, hb, w.W2, hidden, dim);
            for (int i = 0; i < dim; i++) x[i] += xb[i];
        }
        RmsNorm(x, x, _finalNorm);
        var logits = new double[_c.VocabSize];
        MatMul(logits, x, _classifier, dim, _c.VocabSize);
        Position = pos + 1;
        return logits;
    }

    public static int ArgMax(ReadOnlySpan<double> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    // RoPE over every head of a projection laid out [heads, head_size].
    private void Rotate(Span<double> vec, int pos)
    {
        int hs = _c.HeadSize, half = hs / 2;
        for (int h = 0; h < vec.Length / hs; h++)
            for (int j = 0; j < half; j++)
            {
                // llama2.c: pair (2j, 2j+1); rotate-half weights: pair (j, j + hs/2).
                int a = h * hs + (_c.RopeLayout == RopeLayout.InterleavedPairs ? 2 * j : j);
                int b = h * hs + (_c.RopeLayout == RopeLayout.InterleavedPairs ? 2 * j + 1 : j + half);
                double angle = pos * _freq[j];
                double cr = Math.Cos(angle), ci = Math.Sin(angle);
                double v0 = vec[a], v1 = vec[b];
                vec[a] = v0 * cr - v1 * ci;
                vec[b] = v0 * ci + v1 * cr;
            }
    }

    private void RmsNorm(Span<double> o, ReadOnlySpan<double> x, double[] weight)
    {
        double ss = 0;
        foreach (double v in x) ss += v * v;
        ss = 1.0 / Math.Sqrt(ss / x.Length + _c.NormEps);
        for (int i = 0; i < x.Length; i++) o[i] = weight[i] * (ss * x[i]);
    }

    private static void Softmax(Span<double> x)
    {
        double max = double.NegativeInfinity;
        foreach (double v in x) max = Math.Max(max, v);
        double sum = 0;
        for (int i = 0; i < x.Length; i++) { x[i] = Math.Exp(x[i] - max); sum += x[i]; }
        for (int i = 0; i < x.Length; i++) x[i] /= sum;
    }

    // W (d, n) @ x (n,) -> xout (d,), W row-major [out, in] as in run.c.
    private static void MatMul(Span<double> xout, ReadOnlySpan<double> x, double[] w, int n, int d)
    {
        for (int i = 0; i < d; i++)
        {
            var row = new ReadOnlySpan<double>(w, i * n, n);
            double val = 0;
            for (int j = 0; j < n; j++) val += row[j] * x[j];
            xout[i] = val;
        }
    }

    private static double[] Widen(float[] values)
    {
        var result = new double[values.Length];
        for (int i = 0; i < values.Length; i++) result[i] = values[i];
        return result;
    }
}
