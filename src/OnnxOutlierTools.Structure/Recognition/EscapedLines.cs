using System.Text;
using OnnxOutlierTools.Text;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Collects report lines, each passed whole through <see cref="Printable.Escape"/>. Report lines are
/// built from names, op types, domains and graph names the model file chose; one newline, escape sequence or
/// bidi override in any of them would forge a line or drive the terminal. Escaping the finished line covers
/// every field in it, fields added later included (the literal text around them is plain ASCII).</summary>
internal sealed class EscapedLines
{
    private readonly StringBuilder _text = new();

    public void Add(string line) => _text.AppendLine(Printable.Escape(line));

    public override string ToString() => _text.ToString();
}
