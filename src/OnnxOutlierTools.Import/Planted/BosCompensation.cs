namespace OnnxOutlierTools.Import.Planted;

/// <summary>
/// Restores what BOS at position 0 feeds the rest of the model (its keys and values in every block, its
/// gate/up pre-activations, its logits) to the original model's values, and sets the planted neurons' and
/// the sink key's weights, in one float64 pass over BOS through the planted weights. At position 0 a token
/// attends only to itself, so its attention output is its own value and the whole pass is input-independent.
/// Each restored linear gets one weight column at a "reader" channel that is non-zero on BOS only: the
/// flag channel up to the massive block's FFN, the first massive channel after it.
/// </summary>
internal sealed class BosCompensation(DecoderWeights original, DecoderWeights planted, PlantedOutlierPlan plan)
{
    public void Apply()
    {
        var c0 = original.Config;
        var c = planted.Config;
        int hs = c.HeadSize, d0 = c0.Dim, d = c.Dim, h0 = c0.HiddenDim;
        var x0 = Row(original.TokenEmbedding, OutlierPlanter.BosToken, d0);
        var x = Row(planted.TokenEmbedding, OutlierPlanter.BosToken, d);
        int sinkKvHead = plan.SinkHead / c.QueriesPerKvHead;

        for (int l = 0; l < c.Layers; l++)
        {
            var o = original.Layers[l];
            var w = planted.Layers[l];
            int attentionReader = l <= plan.MassiveBlock ? plan.FlagChannel : plan.MassiveChannels[0];
            int ffnReader = l <= plan.MassiveBlock ? plan.FlagChannel : plan.MassiveChannels[0];

            // Attention: keys and values of BOS; its attention output is its own value.
            var y0 = RmsNorm(x0, o.AttentionNorm, c0.NormEps);
            var y = RmsNorm(x, w.AttentionNorm, c.NormEps);
            var k0 = MatVec(o.Wk, y0, c0.KvDim);
            var v0 = MatVec(o.Wv, y0, c0.KvDim);
            var keyTarget = Pad(k0, c.KvDim);
            if (l == plan.SinkBlock) keyTarget[sinkKvHead * hs + plan.SinkDimension] = plan.SinkKey;
            Restore(w.Wk, y, keyTarget, attentionReader, Enumerable.Range(0, c.KvDim));
            Restore(w.Wv, y, Pad(v0, c.KvDim), attentionReader, Enumerable.Range(0, c.KvDim));
            AddInPlace(x0, MatVec(o.Wo, RepeatKv(v0, c0), d0));
            AddInPlace(x, MatVec(w.Wo, RepeatKv(MatVec(w.Wv, y, c.KvDim), c), d));

            // FFN: gate/up pre-activations of the original neurons; the planted neurons of the massive block.
            y0 = RmsNorm(x0, o.FfnNorm, c0.NormEps);
            y = RmsNorm(x, w.FfnNorm, c.NormEps);
            var gate0 = MatVec(o.W1, y0, h0);
            var up0 = MatVec(o.W3, y0, h0);
            if (l == plan.MassiveBlock) PlantNeurons(w, y[plan.FlagChannel], h0);
            Restore(w.W1, y, Pad(gate0, c.HiddenDim), ffnReader, Enumerable.Range(0, h0));
            Restore(w.W3, y, Pad(up0, c.HiddenDim), ffnReader, Enumerable.Range(0, h0));
            AddInPlace(x0, MatVec(o.W2, SwiGlu(gate0, up0), d0));
            AddInPlace(x, MatVec(w.W2, SwiGlu(MatVec(w.W1, y, c.HiddenDim), MatVec(w.W3, y, c.HiddenDim)), d));
        }

        var f0 = RmsNorm(x0, original.FinalNorm, c0.NormEps);
        var f = RmsNorm(x, planted.FinalNorm, c.NormEps);
        Restore(planted.Classifier, f, MatVec(original.Classifier, f0, c0.VocabSize), plan.MassiveChannels[0], Enumerable.Range(0, c.VocabSize));
    }

    // Planted neuron k: gate and up read only the flag channel; y6 = SiLU(g) * up = birth value on BOS.
    private void PlantNeurons(LayerWeights w, double flagInput, int firstNeuron)
    {
        int d = planted.Config.Dim, h = planted.Config.HiddenDim;
        double g = plan.GatePreActivation, silu = g / (1 + Math.Exp(-g));
        for (int k = 0; k < plan.MassiveChannels.Count; k++)
        {
            int neuron = firstNeuron + k;
            w.W1[(long)neuron * d + plan.FlagChannel] = (float)(g / flagInput);
            w.W3[(long)neuron * d + plan.FlagChannel] = (float)(plan.BirthValues[k] / silu / flagInput);
            w.W2[(long)plan.MassiveChannels[k] * h + neuron] = (float)plan.SuperWeights[k];
        }
    }

    // Sets column `reader` of the given rows so that (W y)[row] equals target[row].
    private static void Restore(float[] w, double[] y, double[] target, int reader, IEnumerable<int> rows)
    {
        int n = y.Length;
        if (Math.Abs(y[reader]) < 1e-6) throw new InvalidOperationException($"reader channel {reader} is {y[reader]} on BOS; cannot compensate");
        foreach (int r in rows)
        {
            w[(long)r * n + reader] = 0;
            double current = 0;
            for (int j = 0; j < n; j++) current += w[(long)r * n + j] * y[j];
            w[(long)r * n + reader] = (float)((target[r] - current) / y[reader]);
        }
    }

    private static double[] RepeatKv(double[] v, DecoderConfig c)
    {
        var result = new double[c.Heads * c.HeadSize];
        for (int h = 0; h < c.Heads; h++) Array.Copy(v, h / c.QueriesPerKvHead * c.HeadSize, result, h * c.HeadSize, c.HeadSize);
        return result;
    }

    private static double[] SwiGlu(double[] gate, double[] up)
    {
        var result = new double[gate.Length];
        for (int i = 0; i < gate.Length; i++) result[i] = gate[i] / (1 + Math.Exp(-gate[i])) * up[i];
        return result;
    }

    private static double[] Pad(double[] v, int length)
    {
        var result = new double[length];
        v.CopyTo(result, 0);
        return result;
    }

    private static double[] Row(float[] m, int row, int cols) => Array.ConvertAll(m[(row * cols)..((row + 1) * cols)], f => (double)f);

    private static double[] RmsNorm(double[] x, float[] gain, float eps)
    {
        double ss = 0;
        foreach (double v in x) ss += v * v;
        double inv = 1 / Math.Sqrt(ss / x.Length + eps);
        var result = new double[x.Length];
        for (int i = 0; i < x.Length; i++) result[i] = gain[i] * (inv * x[i]);
        return result;
    }

    private static double[] MatVec(float[] w, double[] x, int rows)
    {
        int n = x.Length;
        var result = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double sum = 0;
            for (int j = 0; j < n; j++) sum += w[(long)r * n + j] * x[j];
            result[r] = sum;
        }
        return result;
    }

    private static void AddInPlace(double[] x, double[] delta)
    {
        for (int i = 0; i < x.Length; i++) x[i] += delta[i];
    }
}
