"""The MPA-SA is made for the identity the domain's RADIUS server
authenticated: an Access-Accept naming another User-Name than the EAP
identity the AA saw is refused."""

import pytest

from mpa_mn.protocol import ProtocolError
from support.service_rig import IDENTITY, Rig


def test_an_accept_naming_the_same_identity_gives_the_sa():
    rig = Rig()
    rig.radius.user_names[IDENTITY] = IDENTITY
    assert rig.preauth().identity == IDENTITY
    assert [sa.identity for sa in rig.service.aa.sas.values()] == [IDENTITY]


def test_an_accept_naming_another_identity_is_refused_and_counted():
    rig = Rig()
    rig.radius.user_names[IDENTITY] = "mn2@domain-a"
    with pytest.raises(ProtocolError) as err:
        rig.preauth()
    assert err.value.code == "authorization-rejected"
    assert rig.service.aa.sas == {} and rig.service.paa.sessions == {}
    assert rig.counters["pana_aaa_identity_mismatch"] == 1
