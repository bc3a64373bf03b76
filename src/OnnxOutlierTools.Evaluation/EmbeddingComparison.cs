namespace OnnxOutlierTools.Evaluation;

/// <summary>Accumulates the cosine similarity of two encoders' hidden states [S, H] per window: per token, and of the
/// mean-pooled embedding, in float64.</summary>
internal sealed class EmbeddingComparison(string output)
{
    private long _tokens, _windows;
    private double _tokenSum, _pooledSum, _tokenMin = double.PositiveInfinity, _pooledMin = double.PositiveInfinity;

    public void Add(ReadOnlySpan<float> model, ReadOnlySpan<float> reference, int positions)
    {
        if (model.Length != reference.Length || positions <= 0 || model.Length % positions != 0)
            throw new EvaluationInputException($"output '{output}': the model gives {model.Length} values, the reference {reference.Length}, for {positions} positions: the hidden sizes differ");
        int hidden = model.Length / positions;
        var pooledModel = new double[hidden];
        var pooledReference = new double[hidden];
        for (int t = 0; t < positions; t++)
        {
            var a = model.Slice(t * hidden, hidden);
            var b = reference.Slice(t * hidden, hidden);
            double c = Cosine(a, b);
            _tokenSum += c;
            _tokenMin = Math.Min(_tokenMin, c);
            _tokens++;
            for (int i = 0; i < hidden; i++) { pooledModel[i] += a[i]; pooledReference[i] += b[i]; }
        }
        double pooled = Cosine(pooledModel, pooledReference);
        _pooledSum += pooled;
        _pooledMin = Math.Min(_pooledMin, pooled);
        _windows++;
    }

    public EmbeddingSimilarity Result() => new(output, _tokens, _tokenSum / _tokens, _tokenMin, _pooledSum / _windows, _pooledMin);

    private static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++) { dot += (double)a[i] * b[i]; na += (double)a[i] * a[i]; nb += (double)b[i] * b[i]; }
        return na == 0 && nb == 0 ? 1 : dot / Math.Sqrt(na * nb);
    }

    private static double Cosine(double[] a, double[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
        return na == 0 && nb == 0 ? 1 : dot / Math.Sqrt(na * nb);
    }
}
