using OnnxOutlierTools.Mitigation.Measurement;

namespace OnnxOutlierTools.Evaluation;

/// <summary>Accumulates, over scored positions, the model's next-token NLL and (with a reference) the reference's NLL,
/// KL(reference || model) and top-1 agreement, in float64 (<see cref="NextTokenMath"/>). A position whose logits are not
/// finite in either model is left out of every sum and counted.</summary>
internal sealed class NextTokenScorer(bool withReference)
{
    private long _scored, _agree, _nonFiniteModel, _nonFiniteReference;
    private double _nllModel, _nllReference, _kl, _maxKl = double.NegativeInfinity;
    private int _maxWindow = -1, _maxPosition = -1;
    private double[] _lm = [], _lr = [];

    public void Add(ReadOnlySpan<float> model, ReadOnlySpan<float> reference, int target, int window, int position)
    {
        bool finiteModel = NextTokenMath.AllFinite(model), finiteReference = !withReference || NextTokenMath.AllFinite(reference);
        if (!finiteModel) _nonFiniteModel++;
        if (!finiteReference) _nonFiniteReference++;
        if (!finiteModel || !finiteReference) return;
        if (_lm.Length != model.Length) { _lm = new double[model.Length]; _lr = new double[model.Length]; }
        int argModel = NextTokenMath.LogSoftmax(model, _lm);
        _scored++;
        _nllModel -= _lm[target];
        if (!withReference) return;
        int argReference = NextTokenMath.LogSoftmax(reference, _lr);
        _nllReference -= _lr[target];
        double kl = NextTokenMath.Kl(_lr, _lm);
        _kl += kl;
        if (kl > _maxKl) (_maxKl, _maxWindow, _maxPosition) = (kl, window, position);
        if (argModel == argReference) _agree++;
    }

    public PerplexityScore Model => Score(_nllModel, _nonFiniteModel);
    public PerplexityScore? Reference => withReference ? Score(_nllReference, _nonFiniteReference) : null;

    public DivergenceResult? Divergence => !withReference ? null : new DivergenceResult(_scored,
        _scored == 0 ? double.NaN : _kl / _scored, _scored == 0 ? double.NaN : _maxKl, _maxWindow, _maxPosition,
        _scored == 0 ? double.NaN : (double)_agree / _scored);

    private PerplexityScore Score(double sum, long nonFinite)
    {
        double mean = _scored == 0 ? double.NaN : sum / _scored;
        return new PerplexityScore(_scored, sum, mean, Math.Exp(mean), nonFinite);
    }
}
